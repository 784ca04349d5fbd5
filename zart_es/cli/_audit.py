"""``zart-es audit seal|verify|keygen|log``: the sealed ledger and the operator trail.

``audit query`` is the old name of ``archive query`` (SQL over the archive), kept for one
release: "audit" now means the verifiable record only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

import msgspec

from zart_es.cli._archive import archive_url, query, query_options, trail_log
from zart_es.cli._common import AddCommand, Handler, print_json, progress_bar
from zart_es.core import AuditKeyring, ConfigError


def add_commands(add: AddCommand, nested: argparse.ArgumentParser) -> dict[str, Handler]:
    """Add ``audit``; returns its handler."""
    audit_ = add("audit", "the verifiable record: seal the ledger, verify, the operator trail")
    which = audit_.add_subparsers(dest="audit_command", required=True)
    seal_ = which.add_parser("seal", parents=[nested],
                             help="write a checkpoint of every execution's chain head to the "
                                  "archive's ledger")
    seal_.add_argument("--signing-key", default=None,
                       help="Ed25519 private key (PEM) that signs the checkpoint (default: "
                            "$ZART_AUDIT_SIGNING_KEY_FILE; none: not signed)")
    seal_.add_argument("--force", action="store_true",
                       help="write a checkpoint even when nothing changed")
    verify_ = which.add_parser("verify", parents=[nested],
                               help="check Redis and the archive against the sealed ledger; "
                                    "exit 0 only when everything holds")
    verify_.add_argument("--execution", default=None, help="check this execution only")
    verify_.add_argument("--since", default=None,
                         help="only executions updated since this time (ISO-8601)")
    verify_.add_argument("--public-key", default=None,
                         help="Ed25519 public key (PEM): every checkpoint must be signed by it")
    verify_.add_argument("--allow-unkeyed", action="store_true",
                         help="accept logs chained before the audit key was set")
    keygen_ = which.add_parser("keygen", help="print a new audit key (hex); with --signing, "
                                              "write an Ed25519 key pair")
    keygen_.add_argument("--signing", default=None, metavar="PATH",
                         help="write the private key to PATH and the public key to PATH.pub")
    which.add_parser("log", parents=[nested],
                     help="the operator trail: archived, then live").add_argument(
        "--follow", "-f", action="store_true", help="keep printing new entries")
    query_options(which.add_parser("query", parents=[nested],
                                   help="deprecated: use `zart-es archive query`"))
    return {"audit": audit}


async def audit(args: argparse.Namespace) -> int:
    """Dispatch ``zart-es audit ...``."""
    match args.audit_command:
        case "seal":
            return await _seal(args)
        case "verify":
            return await _verify(args)
        case "keygen":
            return _keygen(args)
        case "log":
            return await trail_log(args)
        case _:
            print("zart-es: warning: `audit query` is deprecated and will be removed in the "
                  "next release; use `zart-es archive query`", file=sys.stderr)
            return await query(args)


async def _seal(args: argparse.Namespace) -> int:
    from zart_es.audit import Sealer, SigningKey
    from zart_es.store import Deployment

    path = args.signing_key or os.environ.get("ZART_AUDIT_SIGNING_KEY_FILE")
    signing = SigningKey.from_file(path) if path else None
    async with Deployment(args.redis_url, partitions=args.partitions) as deployment:
        sealer = Sealer(deployment, archive_url(args), signing_key=signing)
        with progress_bar("reading heads", args.json) as progress:
            result = await sealer.seal(progress, force=args.force)
    if args.json:
        print_json(msgspec.to_builtins(result))
    elif result.written:
        print(f"checkpoint {result.seq} sealed: {result.heads} head(s) changed of "
              f"{result.executions} execution(s), {result.files} new archive file(s)"
              + ("" if signing else "; not signed"))
    else:
        print(f"nothing changed since checkpoint {result.seq} ({result.executions} "
              "execution(s)); no checkpoint written")
    if deployment.audit_keys is None and not args.json:
        print("note: no audit key: the checkpoint's chain values are unkeyed and its seal "
              "has no HMAC (set ZART_AUDIT_KEY)", file=sys.stderr)
    return 0


async def _verify(args: argparse.Namespace) -> int:
    from zart_es.audit import PublicKey, summary, verify
    from zart_es.store import Deployment

    since_ms = _since(args.since)
    public = PublicKey.from_file(args.public_key) if args.public_key else None
    url = args.archive_url or os.environ.get("ZART_ARCHIVE_URL")
    async with Deployment(args.redis_url, partitions=args.partitions) as deployment:
        with progress_bar("verifying executions", args.json) as progress:
            report = await verify(deployment, url, execution=args.execution,
                                  since_ms=since_ms, public_key=public,
                                  allow_unkeyed=args.allow_unkeyed, progress=progress)
    if args.json:
        print_json({"ok": report.ok, **msgspec.to_builtins(report)})
    else:
        for finding in report.findings:
            print(finding.line())
        for line in summary(report):
            print(line, file=sys.stdout if line.startswith("checked") else sys.stderr)
    return 0 if report.ok else 1


def _keygen(args: argparse.Namespace) -> int:
    if args.signing is None:
        print(AuditKeyring.generate())
        return 0
    from zart_es.audit import generate_signing_key

    public = generate_signing_key(args.signing)
    print(f"wrote the private key to {args.signing} and the public key to {public}")
    return 0


def _since(text: str | None) -> int:
    if text is None:
        return 0
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r} is not an ISO-8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)




