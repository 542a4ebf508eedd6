"""`mobility demo`: the whole pipeline on a small synthetic population, both sides, one folder."""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import yaml

from mobility.config import load_agreement
from mobility.reference import PACKAGE_DATA

DEMO_AGREEMENT = PACKAGE_DATA / "demo-phl-2026.yaml"
# 24 months of data from 2024-01: crossings up to 2024-08 have their 16-month window inside it.
RELEASE_PERIOD = "2024-08"
DEMO_ID, SECOND_ID = "demo-phl-2026", "demo-phl-2026-b"
# one synthetic population, two operators: the demo's (the whole pipeline) and a second one (its flows only)
MARKET_SHARES = {DEMO_ID: 0.7, SECOND_ID: 0.45}


def _step(n: int, title: str) -> float:
    print(f"\n[{n}] {title}", flush=True)
    return time.time()


def _demo_agreement(workdir: Path, input_format: str = "native", agreement_id: str = DEMO_ID,
                    factors: Path | None = None) -> Path:
    """The demo agreement (or, for ``agreement_id`` SECOND_ID, the second operator's) with a fresh random key
    in a 0600 file on the 'operator' side, the ledger's witness in a folder outside the lake (in real use,
    one the auditor controls) and the operator's public population factors (``factors``: the synthetic
    population's own, copied beside the agreement)."""
    secrets_dir = workdir / "operator-secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    key_file = secrets_dir / f"{agreement_id}.key"
    if not key_file.exists():
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_hex(32) + "\n")
    key_file.chmod(0o600)
    data = yaml.safe_load(DEMO_AGREEMENT.read_text())
    data["key"] = {"file": str(key_file.resolve()), "key_id": data["key"]["key_id"]}
    data["ledger_witness"] = str((workdir / ("auditor-witness" if agreement_id == DEMO_ID
                                             else f"auditor-witness-{agreement_id}")).resolve())
    if agreement_id != DEMO_ID:  # another operator: its own agreement, key, subscribers and caps
        data.update(agreement_id=agreement_id, operator="Second Telco Philippines (synthetic)")
        data["controllers"][0] = {**data["controllers"][0], "name": "Second Telco Philippines",
                                  "contact": "dpo@second-telco.example"}
        data["key"]["key_id"] = f"{agreement_id}-k1"
        data["budget"]["population"] = "second-telco-phl-subscribers"
    if input_format != "native":
        data["input_format"] = input_format
    path = workdir / "conf" / "agreements" / f"{agreement_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    population = workdir / "conf" / "population"  # the public factors the agreement names, beside it
    population.mkdir(parents=True, exist_ok=True)
    if factors is not None:
        with open(factors, encoding="utf-8") as handle:
            head = yaml.safe_load(handle)
        shares = population / f"{agreement_id}-shares.csv"
        shutil.copyfile(factors.parent / head["shares"], shares)
        head.update(agreement_id=agreement_id, shares=shares.name)
        (population / f"{agreement_id}.yaml").write_text(yaml.safe_dump(head, sort_keys=False))
        data["population_factors"] = f"../population/{agreement_id}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_demo(workdir: Path, subscribers: int = 400, seed: int = 7, input_format: str = "native") -> None:
    from mobility.anonymize.job import run as anonymize
    from mobility.estimate.combine import combine
    from mobility.privacy_budget import Ledger
    from mobility.privacy_budget import verify as verify_ledger
    from mobility.privacy_budget.plan import planned_rho
    from mobility.publish.export import describe as describe_export
    from mobility.publish.export import export_release
    from mobility.release.flows import describe as describe_release
    from mobility.release.flows import release_flows
    from mobility.release.remittances import describe as describe_remittances
    from mobility.release.remittances import release_remittances
    from mobility.report import write_reports
    from mobility.residence.job import run as run_residence
    from mobility.rights.demo import show_rights
    from mobility.synth import generate

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    population, lake = workdir / "input", workdir / "lake"
    inputs = population / DEMO_ID
    people = round(subscribers / MARKET_SHARES[DEMO_ID])
    delivered = "" if input_format == "native" else f", delivered as {input_format} tables"
    shares = ", ".join(f"{op} {share:.0%}" for op, share in MARKET_SHARES.items())
    t = _step(1, f"Synthetic population: {people} people in the Philippines and abroad, 24 months, holding SIMs of "
                 f"two operators (market shares {shares}){delivered}")
    summary = generate(population, subscribers=people, months=24, start="2024-01", home_country="PHL", seed=seed,
                       fault_rate=0.02, events_per_day=4.0, input_format=input_format, operators=MARKET_SHARES)
    for op, part in summary.operators.items():
        print(f"    {op}: {part.events:,} CDR events and its truth in {population / op}")
    print(f"    the people's truth in {population / 'truth'}, each operator's population factors in "
          f"{population / 'population'} ({time.time() - t:.0f}s)")
    agreement_path = _demo_agreement(workdir, input_format, DEMO_ID, population / "population" / f"{DEMO_ID}.yaml")
    agreement = load_agreement(agreement_path)
    # the budgets of the monthly schedule, fitted into the agreement's caps (`mobility budget plan`)
    flows_rho, remittances_rho = planned_rho(agreement, "flows"), planned_rho(agreement, "remittances")

    t = _step(2, "Operator side: validate, pseudonymize (HMAC-SHA256), minimize, bin on H3")
    result = anonymize(agreement, inputs, lake)
    print(result.summary() + f"\n    ({time.time() - t:.0f}s)")

    t = _step(3, "Statistics office: daily presence and the 12-of-16-months rule")
    residence = run_residence(agreement, lake)
    print(residence.summary() + f"\n    ({time.time() - t:.0f}s)")

    t = _step(4, f"Release: differentially private flows for crossing month {RELEASE_PERIOD} "
                 f"(rho = {flows_rho:g}, from the budget plan)")
    released = release_flows(agreement, lake, RELEASE_PERIOD, purpose="migration-statistics",
                             requested_by="demo analyst", rho=flows_rho, by="sex,age_band")
    print(describe_release(released, rows=8) + f"\n    ({time.time() - t:.0f}s)")

    t = _step(5, f"Release: remittance corridors for {RELEASE_PERIOD}, SDG 10.c.1 and 17.3.2 "
                 f"(rho = {remittances_rho:g}, from the budget plan)")
    remittances = release_remittances(agreement, lake, RELEASE_PERIOD, purpose="remittance-statistics",
                                      requested_by="demo analyst", rho=remittances_rho)
    print(describe_remittances(remittances, rows=6) + f"\n    ({time.time() - t:.0f}s)")

    t = _step(6, "Publishing: SDMX-CSV export, release report and ledger report")
    print(describe_export(export_release(lake, released.release_id, "sdmx-csv", workdir / "export")))
    reports = write_reports(lake, released.release_id, workdir / "reports", agreement)
    print(f"  release report: {reports['release']}\n  ledger report:  {reports['ledger']}"
          f"\n    ({time.time() - t:.0f}s)")

    _step(7, "Auditor: the privacy-budget ledger, by data month")
    ledger = Ledger(lake / "ledger")
    for e in ledger.read()[0]:
        months = e.months if e.status == "charged" else []
        read = f" reads {months[0]}..{months[-1]}" if len(months) > 1 else (f" reads {months[0]}" if months else "")
        print(f"    #{e.seq} {e.status:9s} {e.release_id or e.population} "
              f"rho={e.rho:.3g}{read}  hash {e.entry_hash[:16]}")
    spent = ledger.spent_by(agreement.budget.population)
    month, most = spent.worst(list(spent.by_month))
    print(f"    population {spent.population}: lifetime rho {spent.lifetime:.4g} of {agreement.budget.rho_lifetime:g}; "
          f"most charged data month {month}: rho {most:.4g} of {agreement.budget.rho_per_data_month:g}")

    # Last: an erasure rewrites the office tables, so later releases need a fresh residence run.
    t = _step(8, "Data-subject rights (UN HRC General Comment No. 16): one access request and one erasure")
    print("    " + show_rights(agreement, lake, inputs).replace("\n", "\n    ") + f"\n    ({time.time() - t:.0f}s)")

    _step(9, "Auditor: verify the ledger and every release against the witness kept outside the lake")
    verified = verify_ledger(lake, caps={agreement.agreement_id: agreement.budget}, witness=agreement.ledger_witness)
    print(f"    witness: {agreement.ledger_witness}")
    print("    " + verified.summary().replace("\n", "\n    "))
    if not verified.ok:
        raise SystemExit("the demo's own ledger does not verify; please report this")

    t = _step(10, f"Several operators: {SECOND_ID}'s own lake, key and ledger, its flows for {RELEASE_PERIOD}, "
                  "and one national estimate of people from both")
    second_path = _demo_agreement(workdir, input_format, SECOND_ID, population / "population" / f"{SECOND_ID}.yaml")
    second, lake_b = load_agreement(second_path), workdir / f"lake-{SECOND_ID}"
    anonymize(second, population / SECOND_ID, lake_b)
    run_residence(second, lake_b)
    released_b = release_flows(second, lake_b, RELEASE_PERIOD, purpose="migration-statistics",
                               requested_by="demo analyst", rho=planned_rho(second, "flows"), by="sex,age_band")
    combined = combine([released.path, released_b.path], workdir / "national")
    print("    " + combined.text().replace("\n", "\n    "))
    print("    " + _against_truth(combined, released, released_b, population / "truth" / "population_flows.csv")
          .replace("\n", "\n    ") + f"\n    ({time.time() - t:.0f}s)")

    print(f"\nDone in {time.time() - started:.0f}s. What was produced, and where:")
    rows = [
        ("synthetic population: each operator's inputs, the people's truth", population),
        ("demo agreement (key in operator-secrets/, 0600)", agreement_path),
        ("operator zone: quarantine, cells, run manifests", lake / "operator"),
        ("office zone: pseudonymized events, subscribers, payments", lake / "office"),
        ("office zone: daily presence, home cells, residence changes", lake / "office" / "residence_changes"),
        ("flows release (CSV, Parquet, manifest.json)", released.path),
        ("remittance release (CSV, Parquet, manifest.json)", remittances.path),
        ("SDMX-CSV export with its structure definition", workdir / "export"),
        ("release report and ledger report (HTML)", workdir / "reports"),
        ("privacy-budget ledger (Delta, hash-chained)", lake / "ledger"),
        ("ledger witness, outside the lake (auditors keep it)", agreement.ledger_witness),
        ("rights log (keyed subject references, never numbers)", lake / "operator" / "rights_log"),
        ("second operator's lake, its flows release", released_b.path),
        ("national estimate of people from both operators", combined.out),
    ]
    for what, where in rows:
        print(f"  {what:58s} {where}")
    print(f"\nNext: `mobility ledger verify --lake {lake} --witness {agreement.ledger_witness}` as an auditor "
          f"would; `mobility budget plan --agreement {agreement_path}` for the budgets of the monthly schedule; "
          "docs/architecture.md for how the pieces fit.")


def _against_truth(combined, *releases) -> str:
    """The national estimates of people (each operator's, and combined) beside the synthetic truth."""
    import pandas as pd

    *stored, truth_path = releases
    truth = pd.read_csv(truth_path)
    month = truth[truth["crossing_month"] == RELEASE_PERIOD].groupby("direction")["people"].sum()
    true = {"emigration": int(month.get("departure", 0)), "immigration": int(month.get("arrival", 0))}
    lines = ["people whose residence changed in " + RELEASE_PERIOD + ": estimate (95% interval) against the truth",
             "  (a few hundred people and a month's budget: the noise outweighs so few moves, so read the interval; it "
             "covers the noise with 95% probability, not the errors of the factors or of the residence rule)"]
    for total in ("emigration", "immigration"):
        row = combined.tables["totals_people"].set_index("total").loc[total]
        alone = [(r.manifest["agreement_id"], int(r.tables["totals_people"].set_index("total").loc[total, "people"]))
                 for r in stored]
        each = ", ".join(f"{agreement_id} alone {people:,}" for agreement_id, people in alone)
        lines.append(f"  {total}: both operators {int(row['people']):,} ({int(row['low_95']):,} to "
                     f"{int(row['high_95']):,}); {each}; true {true[total]:,}")
    return "\n".join(lines)
