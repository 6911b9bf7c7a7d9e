"""``vigil deid SRC OUT``: de-identify a folder of DICOM files to the PS3.15 Basic Profile before they leave a site."""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from typing import Any, Final

from core.cli._args import input_dir, output_dir
from core.cli._output import Outcome, progress_bar
from core.cli._paths import check_input_dir
from core.config import Settings, load_settings

__all__ = ["RETAIN_CHOICES", "register_deid"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]
#: ``--retain`` values: ``core.imaging.deid.ProfileOption`` (copied so that ``vigil --help`` loads no pydicom).
RETAIN_CHOICES: Final = (
    "retain_longitudinal_full_dates",
    "retain_patient_characteristics",
    "retain_device_identity",
    "retain_institution_identity",
)


def register_deid(sub: Any, add: AddParser) -> None:
    """Attach ``deid SRC OUT [--site S] [--retain OPTION ...]``."""
    p = add(
        sub,
        "deid",
        "de-identify every DICOM file under SRC into OUT (PS3.15 Basic Profile, UIDs replaced with the site's key); "
        "files with burned-in annotation risk are quarantined: listed, never written",
    )
    p.add_argument("src", type=input_dir, metavar="SRC", help="a folder of DICOM files (searched recursively)")
    p.add_argument("out", type=output_dir, metavar="OUT", help="the output folder, outside SRC (created if needed)")
    p.add_argument("--site", default=None, help="the registered site the files come from (recorded in the audit)")
    p.add_argument(
        "--retain",
        action="append",
        choices=RETAIN_CHOICES,
        default=[],
        metavar="OPTION",
        help=f"a profile option to turn on (off by default; repeatable): {', '.join(RETAIN_CHOICES)}",
    )
    p.set_defaults(handler=_deid)


def _settings() -> Settings:
    return load_settings(os.environ)


def _deid(args: argparse.Namespace) -> Outcome:
    from core.imaging.deid import ProfileOption
    from core.services import deidentify
    from core.services.store import open_store, utc_now

    check_input_dir(args.src)
    settings = _settings()
    sf = open_store(settings)
    job = deidentify.DeidJob(
        src=args.src,
        out=args.out,
        site=args.site,
        options=tuple(ProfileOption(o) for o in args.retain),
        # The site's own list when it sets one ([vigil.deid.sites.SITE]), else the installation's.
        private_allowlist=deidentify.private_elements(settings.deid.allowlist_for(args.site)),
        max_file_bytes=settings.max_file_bytes,
    )
    # Refused here before a progress bar is drawn; the service checks again, and makes the key on
    # first use only after every check passed.
    deidentify.check_request(sf, job)
    with progress_bar(0, "deid", enabled=not args.json) as advance:
        report = deidentify.deidentify_folder(
            sf,
            job,
            key=lambda: deidentify.deid_secret(settings),
            actor=f"cli:{getpass.getuser()}",
            now=utc_now,
            progress=advance,
        )
    return Outcome(report.to_dict(), _text(report))


def _text(report: Any) -> str:
    lines = [
        f"de-identified {len(report.written)} files into {report.out_dir} "
        f"(quarantined {len(report.quarantined)}, skipped {len(report.skipped)}); "
        f"table {report.profile_version}, SHA-256 {report.table_sha256}"
    ]
    if report.private_allowlist:
        lines.append(f"  private elements kept when present (allow-list): {'; '.join(report.private_allowlist)}")
    if report.replaced:
        lines.append(f"  {len(report.replaced)} of these outputs were already in {report.out_dir} and were rewritten")
    if report.stale_parts_removed:
        lines.append(f"  removed {report.stale_parts_removed} temporary files an interrupted run had left")
    lines += [f"  quarantined {q.path}: {q.reason}" for q in report.quarantined]
    lines += [f"  skipped {s.path}: {s.reason}" for s in report.skipped]
    return "\n".join(lines)
