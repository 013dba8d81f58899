"""Write the seed corpus of fuzz/corpus/parse_message/: valid messages built from tests/samples.

Deterministic: re-running rewrites the same files (named by SHA-1 of their content).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import samples  # noqa: E402
from ikecp._reference import encode_message  # noqa: E402


def messages() -> list:
    out = list(samples.all_samples())
    base = samples.ike_auth_request()
    inner = samples.all_payloads_message().payloads
    for p in inner:  # each payload type alone, then growing chains
        out.append(replace(base, payloads=(p,)))
    for n in range(2, len(inner), 3):
        out.append(replace(base, payloads=inner[:n]))
    out.append(replace(samples.sa_init_request(), flags=0x20, spi_r=samples.SPI_R))
    out.append(samples.fragment_message())
    return out


def main() -> None:
    corpus = ROOT / "fuzz" / "corpus" / "parse_message"
    corpus.mkdir(parents=True, exist_ok=True)
    for msg in messages():
        wire = encode_message(msg)
        (corpus / hashlib.sha1(wire).hexdigest()).write_bytes(wire)


if __name__ == "__main__":
    main()
