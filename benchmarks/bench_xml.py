"""Examples per second: through libvirt's parser (test:/// driver) against the models alone.

Run: ``python benchmarks/bench_xml.py [--examples N] [--repeat R]``. The baseline is the models'
own build+parse rate measured in the same run on the same examples, so figures compare across
machines as ratios. A second table puts a bound read-modify-write (parse text, change the name,
write it back keeping what the model does not read) against the same baseline. Nothing here
asserts on time.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness import strategies as hs
from harness.libvirt.xml_oracle import define_domain, define_network, dump_nodedev, open_test_connection
from harness.xml import Domain, Network, NodeDevice

T = TypeVar("T")


def collect(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """The same ``count`` examples on every run (derandomized), without hypothesis's shrinking."""
    examples: list[T] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def gather(example: T) -> None:
        examples.append(example)

    gather()
    return examples


def rate(examples: Sequence[T], step: Callable[[T], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for example in examples:
            step(example)
        best = min(best, time.perf_counter() - start)
    return len(examples) / best


def _define_without_schema(conn: Any, domain: Domain) -> Domain:
    """Plain defineXML: shows how much of libvirt's time is its per-call RelaxNG load."""
    defined = conn.defineXML(domain.to_xml())
    try:
        return Domain.parse(defined.XMLDesc(0))
    finally:
        defined.undefine()


def _read_modify_write(model_class: Any) -> Callable[[str], object]:
    def step(text: str) -> object:
        model = model_class.parse(text)
        return dataclasses.replace(model, name=model.name + "-x").to_xml()

    return step


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    conn: Any = open_test_connection()

    cases: list[tuple[str, list[Any], Callable[[Any], object], Callable[[Any], object]]] = [
        (
            "domain",
            collect(hs.domains(), args.examples),
            lambda d: Domain.parse(d.to_xml()),
            lambda d: define_domain(conn, d),
        ),
        (
            "domain-norng",
            collect(hs.domains(), args.examples),
            lambda d: Domain.parse(d.to_xml()),
            lambda d: _define_without_schema(conn, d),
        ),
        (
            "network",
            collect(hs.networks(), args.examples),
            lambda n: Network.parse(n.to_xml()),
            lambda n: define_network(conn, n),
        ),
        (
            "nodedev",
            collect(hs.node_devices(), args.examples),
            lambda d: NodeDevice.parse(d.to_xml()),
            dump_nodedev,
        ),
    ]
    print(f"{'document':<14}{'examples':>9}{'models/s':>12}{'libvirt/s':>12}{'libvirt/models':>16}")
    for name, examples, through_models, through_libvirt in cases:
        models_rate = rate(examples, through_models, args.repeat)
        libvirt_rate = rate(examples, through_libvirt, args.repeat)
        print(
            f"{name:<14}{len(examples):>9}{models_rate:>12.0f}{libvirt_rate:>12.0f}"
            f"{libvirt_rate / models_rate:>16.3f}"
        )
    print("models/s: build with lxml + parse into the model; libvirt/s: the same plus define (with")
    print("schema validation), XMLDesc and undefine in test:///default, or a test:///node-file open")
    print("and nodedev-dumpxml for nodedevs. Ratio < 1 means libvirt is that fraction of the models' rate.")
    print()
    print(f"{'document':<14}{'examples':>9}{'models/s':>12}{'rmw/s':>12}{'rmw/models':>16}")
    for name, examples, through_models, _libvirt in cases:
        if name == "domain-norng":
            continue
        model_class = type(examples[0])
        texts = [example.to_xml() for example in examples]
        models_rate = rate(examples, through_models, args.repeat)
        rmw_rate = rate(texts, _read_modify_write(model_class), args.repeat)
        print(
            f"{name:<14}{len(examples):>9}{models_rate:>12.0f}{rmw_rate:>12.0f}{rmw_rate / models_rate:>16.3f}"
        )
    print("rmw/s: parse libvirt-style text, replace the name, write it back (the model bound to its tree).")
    conn.close()


if __name__ == "__main__":
    main()
