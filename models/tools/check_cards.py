#!/usr/bin/env python3
"""Checks every committed model card under models/: the file it names exists, its sha256 is
the card's (and so for every file of a card's `files` map, as the item-embeddings card lists
its vectors and item ids), and the card's name and version are the directories it sits in.
Fast; CI runs it.

    python models/tools/check_cards.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parent.parent


def problems(card_path: Path) -> list[str]:
    card = json.loads(card_path.read_text(encoding="utf-8"))
    where = card_path.relative_to(MODELS)
    found = []
    version_dir = card_path.parent
    if (card.get("name"), card.get("version")) != (version_dir.parent.name, version_dir.name):
        found.append(f"{where}: card is for {card.get('name')}@{card.get('version')}")
    model = version_dir / card.get("file", "model.onnx")
    if not model.is_file():
        return found + [f"{where}: {model.name} is missing"]
    expected = {model.name: card.get("sha256"), **card.get("files", {})}
    for name, sha256 in expected.items():
        path = version_dir / name
        if not path.is_file():
            found.append(f"{where}: {name} is missing")
            continue
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != sha256:
            found.append(f"{where}: sha256 {sha256} but {name} hashes to {actual}")
    return found


def main() -> int:
    cards = sorted(MODELS.glob("**/model.json"))
    found = [problem for card in cards for problem in problems(card)]
    for problem in found:
        print(problem, file=sys.stderr)
    print(f"{len(cards)} model cards checked, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
