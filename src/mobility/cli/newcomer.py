"""Newcomers, on a laptop: `synth` writes a synthetic population, `demo` runs the whole pipeline on one."""

from __future__ import annotations

import json

import click

from mobility.cli import options


def _operator_shares(ctx, param, values) -> dict[str, float] | None:
    """`--operator ID=SHARE`, repeatable: the operators and their market shares (None when not given)."""
    if not values:
        return None
    shares: dict[str, float] = {}
    for value in values:
        op, sep, share = value.partition("=")
        op = op.strip()
        try:
            number = float(share)
        except ValueError:
            number = None
        if not sep or not op or number is None:
            raise click.BadParameter(f"{value!r} is not ID=SHARE", ctx, param)
        if op.lower() in {o.lower() for o in shares}:
            raise click.BadParameter(f"operator {op!r} is given twice", ctx, param)
        shares[op] = number
    return shares


@click.command("synth")
@click.option("--out", "out_dir", required=True, type=options.FOLDER,
              help="folder to write the synthetic inputs and truth/ into")
@click.option("--subscribers", default=1000, show_default=True, type=click.IntRange(10, 10_000_000),
              help="people simulated (with --operator: the whole population, holders of any operator or none)")
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
@click.option("--operator", "operators", multiple=True, metavar="ID=SHARE", callback=_operator_shares,
              help="an operator and its market share in (0, 1]; repeat for several. Each person holds each "
                   "operator's SIM independently; OUT/ID/ is each operator's delivery, OUT/truth/ the people's "
                   "truth, OUT/population/ each operator's population factors (docs/synthetic.md)")
@click.option("--multi-sim-share", default=None, type=click.FloatRange(0, 1),
              help="share of an operator's holders with a second SIM of it [default: fault-rate of stayers]")
@click.option("--sim-drop-abroad", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="share of long-term emigrants who stop using their home SIMs 1-30 days after crossing")
@click.option("--migrant-share-ratio", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="with --operator: how much likelier labour migrants are to hold an operator's SIM than others")
@click.option("--region-resolution", default=5, show_default=True, type=click.IntRange(0, 15),
              help="with --operator: H3 resolution of the regions of the population factors")
def synth(out_dir, subscribers, months, start, home_country, seed, fault_rate, events_per_day, input_format,
          operators, multi_sim_share, sim_drop_abroad, migrant_share_ratio, region_resolution):
    """Write a synthetic population (CDRs, cells, subscribers, payments) with ground truth."""
    from mobility.synth import generate

    summary = generate(out_dir, subscribers=subscribers, months=months, start=start,
                       home_country=home_country.upper(), seed=seed, fault_rate=fault_rate,
                       events_per_day=events_per_day, input_format=input_format, operators=operators,
                       multi_sim_share=multi_sim_share, sim_drop_abroad=sim_drop_abroad,
                       migrant_share_ratio=migrant_share_ratio, region_resolution=region_resolution)
    click.echo(json.dumps(summary.to_dict(), indent=2, default=str))


@click.command("demo")
@click.option("--workdir", default="demo-out", show_default=True, type=options.FOLDER)
@click.option("--subscribers", default=400, show_default=True, type=click.IntRange(50, 100_000),
              help="about how many subscribers the demo's operator has (it holds SIMs of 70% of the synthetic "
                   "population; a second operator 45%)")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--format", "input_format", default="native", show_default=True, type=click.Choice(["native", "flowdb"]),
              help="the operator's delivery format: the native contract or FlowDB's tables (multimno's bronze data "
                   "has no subscriber register, payments or numbers, which the demo's later steps need)")
def demo(workdir, subscribers, seed, input_format):
    """Run the whole pipeline end to end on a small synthetic population and say what it produced."""
    from mobility.demo import run_demo

    run_demo(workdir, subscribers=subscribers, seed=seed, input_format=input_format)
