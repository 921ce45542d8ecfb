#!/usr/bin/env python3
"""Prints the held-out metrics of the committed model cards as Markdown tables (for
models/README.md), so the numbers in the docs are the ones in the cards.

    python models/tools/metrics_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

MODELS = Path(__file__).resolve().parent.parent
COLUMNS = ("auc", "pr_auc", "log_loss", "ece")


def table(title: str, rows: dict, selected: str) -> str:
    lines = [f"**{title}**", "", "| model | AUC | PR-AUC | log-loss | ECE | rows | positive rate |", "|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        label = f"{name} (selected)" if name == selected else name
        cells = " | ".join(f"{m[c]:.4f}" for c in COLUMNS)
        lines.append(f"| {label} | {cells} | {m['rows']} | {m['positive_rate']:.4f} |")
    return "\n".join(lines) + "\n"


def ranker_tables(card: dict) -> str:
    m = card["metadata"]["metrics"]
    selected = m["selected"]
    lines = [
        f"**ranker@{card['version']}, P(click) of a shown item: test split, every item of the recommendation lists shown (SIMULATED)**",
        "",
        "| model | AUC | log-loss | AUC within position | NDCG@10 | HR@3 | MRR | rows | lists with a click |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in m["test"].items():
        label = f"{name} (selected)" if name == selected else name
        lists = m["test_lists"][name]
        lines.append(
            f"| {label} | {row['auc']:.4f} | {row['log_loss']:.4f} | {m['test_within_position_auc'][name]:.4f} "
            f"| {lists['ndcg@10']:.4f} | {lists['hr@3']:.4f} | {lists['mrr']:.4f} | {row['rows']} | {lists['lists']} |"
        )
    real = card["metadata"].get("evaluation_real_data")
    if real:
        lines += [
            "",
            f"**{real['title']}**",
            "",
            "| method | HR@10 | NDCG@10 | MRR | users |",
            "|---|---|---|---|---|",
        ]
        for name, row in real["test"].items():
            lines.append(f"| {name} | {row['hr@10']:.4f} | {row['ndcg@10']:.4f} | {row['mrr']:.4f} | {row['users']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    intent = json.loads((MODELS / "intent/1/model.json").read_text())["metadata"]["metrics"]
    for target, label in (("purchase", "P(order in session)"), ("abandonment", "P(cart abandoned)")):
        r = intent[target]
        print(table(f"intent@1, {label}: test split, every event of a session up to its order (SIMULATED)", r["test"], r["selected"]))
        print(table(f"intent@1, {label}: test split, first event of each session only (SIMULATED)", r["test_first_event"], r["selected"]))
    repurchase = json.loads((MODELS / "repurchase/1/model.json").read_text())["metadata"]["metrics"]
    print(table("repurchase@1, P(order in the next 91 days): CDNOW customers at 1997-10-01 (REAL)", repurchase["test"], repurchase["selected"]))
    print(ranker_tables(json.loads((MODELS / "ranker/3/model.json").read_text())))


if __name__ == "__main__":
    main()
