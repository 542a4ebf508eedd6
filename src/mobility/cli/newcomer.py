"""Newcomers, on a laptop: `synth` writes a synthetic population, `demo` runs the whole pipeline on one."""

from __future__ import annotations

import json

import click

from mobility.cli import options


@click.command("synth")
@click.option("--out", "out_dir", required=True, type=options.FOLDER,
              help="folder to write the synthetic inputs and truth/ into")
@click.option("--subscribers", default=1000, show_default=True, type=click.IntRange(10, 10_000_000))
@click.option("--months", default=24, show_default=True, type=click.IntRange(1, 120))
@click.option("--start", default="2024-01", show_default=True, help="first month, YYYY-MM")
@click.option("--home-country", default="PHL", show_default=True, help="ISO 3166-1 alpha-3 of the operator")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--fault-rate", default=0.02, show_default=True, type=click.FloatRange(0, 0.5))
@click.option("--events-per-day", default=6.0, show_default=True, type=click.FloatRange(0.1, 500))
@click.option("--format", "input_format", default="native", show_default=True,
              type=click.Choice(["native", "flowdb", "multimno"]),
              help="write the records as the native contract, as FlowDB CSV tables, or as multimno's bronze "
                   "Parquet (docs/contracts.md, 'Operators' formats'); anonymize them with that input_format")
def synth(out_dir, subscribers, months, start, home_country, seed, fault_rate, events_per_day, input_format):
    """Write a synthetic population (CDRs, cells, subscribers, payments) with ground truth."""
    from mobility.synth import generate

    summary = generate(out_dir, subscribers=subscribers, months=months, start=start,
                       home_country=home_country.upper(), seed=seed, fault_rate=fault_rate,
                       events_per_day=events_per_day, input_format=input_format)
    click.echo(json.dumps(summary.to_dict(), indent=2, default=str))


@click.command("demo")
@click.option("--workdir", default="demo-out", show_default=True, type=options.FOLDER)
@click.option("--subscribers", default=400, show_default=True, type=click.IntRange(50, 100_000))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--format", "input_format", default="native", show_default=True, type=click.Choice(["native", "flowdb"]),
              help="the operator's delivery format: the native contract or FlowDB's tables (multimno's bronze data "
                   "has no subscriber register, payments or numbers, which the demo's later steps need)")
def demo(workdir, subscribers, seed, input_format):
    """Run the whole pipeline end to end on a small synthetic population and say what it produced."""
    from mobility.demo import run_demo

    run_demo(workdir, subscribers=subscribers, seed=seed, input_format=input_format)
