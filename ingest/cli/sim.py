"""`ingest sim`: run the built-in provider emulator in the foreground.

The first line on stdout is exactly ``ingest sim listening on http://HOST:PORT``
(flushed at once, so a script or test can start the process and read the
URL); details go to stderr. It serves until SIGINT or SIGTERM, then exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ingest.cli.options import fault_plan, positive_seconds
from ingest.loop import backend_options

if TYPE_CHECKING:
    from ingest.sim.settings import (
        AutoenhanceSimSettings,
        ModelHunterSimSettings,
        ScenarioSimSettings,
    )

_N = TypeVar("_N", int, float)

DESCRIPTION = """\
Run the built-in provider emulator: the upload APIs of Novita
(POST /v3/assets/training_dataset), ModelHunter (POST /api/v1/files/upload-url,
POST /api/v1/files/ID/complete) and Autoenhance (POST /v3/images/, GET
/v3/images/ID, GET /v3/orders/ID), Scenario (under /v1: models, their
training-images, assets and multipart uploads), and an S3-like storage route
(PUT /s3/BUCKET/KEY) that checks real SigV4 pre-signed URLs, expiry, chunked
bodies and Content-Length the way S3 does, with optional seeded faults; or,
with --storage-url, URLs signed for another S3-compatible server.

Inspect it while it runs: GET /_sim/health, /_sim/objects, /_sim/assets,
/_sim/stats, /_sim/modelhunter/files, /_sim/scenario/models; change faults with PUT /_sim/faults (body: a plan string).
The first stdout line is "ingest sim listening on http://HOST:PORT".
Stop it with Ctrl-C or SIGTERM (exit status 0).
"""

FAULTS_EPILOG = """\
fault plans (--faults, PUT /_sim/faults): comma-separated name=value items,
e.g. "seed=7,api.429=0.1,api.retry_after=2,put.reset=0.05,skew=-300"
  seed=INT                      random seed (default 0); same seed, same decisions
  api.429 api.500 api.503=P     chance (0..1) an API request gets that status
  api.stall put.stall=P         chance a request is held unanswered (to shutdown or 300 s)
  api.latency put.latency=S     mean delay added to every request, seconds
  api.retry_after=S|none        Retry-After on injected API 429s (default 1)
  api.rate=R|none               token bucket of R requests/s (burst R) on API routes
  api.route=TEXT|none           API faults (status, stall, latency) only on paths containing TEXT
  put.429 put.500 put.503=P     chance a storage PUT gets that status (S3 XML)
  put.retry_after=S|none        Retry-After on injected PUT 429/503s (default none)
  put.reset=P                   chance a PUT is cut mid-body with a TCP reset
  skew=S                        the emulator's clock is S seconds off (signed)
  lifetime=S|none               overrides --lifetime for URLs issued from now on
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "sim",
        help="run the built-in provider emulator (for dry runs, tests and benchmarks)",
        description=DESCRIPTION,
        epilog=FAULTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; control routes answer loopback only)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=0,
        help="port to listen on; 0 picks a free one (default: 0)",
    )
    parser.add_argument(
        "--lifetime",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="lifetime of every issued upload URL, X-Amz-Expires (default: each provider's "
        "own: ModelHunter's 900, Novita's 120, 120 for the others)",
    )
    parser.add_argument(
        "--faults",
        type=fault_plan,
        default="",
        metavar="PLAN",
        help="seeded fault plan, see below (default: no faults)",
    )
    parser.add_argument(
        "--key",
        action="append",
        dest="keys",
        metavar="KEY",
        help="accept only this API key (repeatable; default: accept any non-empty key)",
    )
    parser.add_argument(
        "--assets-id-string",
        action="store_true",
        help="return Novita's assets_id as a 32-hex string instead of an integer",
    )
    parser.add_argument(
        "--store-dir",
        type=Path,
        metavar="DIR",
        help="keep uploaded bodies under DIR/BUCKET/KEY (default: keep only size and SHA-256)",
    )
    _add_storage_flags(parser.add_argument_group("External storage"))
    parser.add_argument(
        "--novita-error-body",
        choices=("v3", "text", "empty"),
        default="v3",
        help="Novita's error bodies: the v3 envelope (default), a text line, or nothing",
    )
    _add_modelhunter_flags(parser.add_argument_group("ModelHunter"))
    _add_autoenhance_flags(parser.add_argument_group("Autoenhance"))
    _add_scenario_flags(parser.add_argument_group("Scenario"))
    parser.set_defaults(func=run)


def _add_storage_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--storage-url",
        metavar="URL",
        help="sign every provider's upload URLs for this S3-compatible bucket instead of "
        "/s3 (path style: http://127.0.0.1:9000/BUCKET); ModelHunter's complete, "
        "Autoenhance's image status and Scenario's multipart complete then ask it (HEAD/GET)",
    )
    group.add_argument(
        "--storage-key-env",
        default="AWS_ACCESS_KEY_ID",
        metavar="NAME",
        help="environment variable holding its access key id (default: AWS_ACCESS_KEY_ID)",
    )
    group.add_argument(
        "--storage-secret-env",
        default="AWS_SECRET_ACCESS_KEY",
        metavar="NAME",
        help="environment variable holding its secret key (default: AWS_SECRET_ACCESS_KEY)",
    )
    group.add_argument(
        "--storage-region",
        default="us-east-1",
        metavar="REGION",
        help="the region its URLs are signed for (default: us-east-1)",
    )


def _add_modelhunter_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--modelhunter-max-mb",
        type=_megabytes,
        metavar="MB",
        help="sizeBytes limit of upload-url, MB (10^6 bytes), for every type; larger → "
        "422 FILE_TOO_LARGE (default: 100, and 50 for images, as the docs say)",
    )
    group.add_argument(
        "--modelhunter-unsigned-content-type",
        action="store_true",
        help="sign only host in upload URLs (default: content-type is signed too)",
    )
    group.add_argument(
        "--modelhunter-keep-expired",
        action="store_true",
        help="complete files whose upload URL expired (default: forget them, 404 FILE_NOT_FOUND)",
    )
    group.add_argument(
        "--modelhunter-complete-repeat",
        choices=("same", "conflict"),
        default="same",
        help="a second complete: the same answer, or 409 ALREADY_COMPLETED (default: same)",
    )
    group.add_argument(
        "--modelhunter-throttle-body",
        choices=("envelope", "text", "empty"),
        default="envelope",
        help="the body of a 429: the error envelope, a text line or nothing (default: envelope)",
    )


def _add_autoenhance_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--autoenhance-url-field",
        choices=("upload_url", "s3PutObjectUrl"),
        default="upload_url",
        help="the URL field answered without x-api-version (default: upload_url; "
        "s3PutObjectUrl as for older accounts)",
    )
    group.add_argument(
        "--autoenhance-rate",
        type=float,
        default=300.0,
        metavar="R",
        help="requests/s per client IP before 429 (default: 300; 0: no limit)",
    )
    group.add_argument(
        "--autoenhance-name-limit",
        type=int,
        default=30,
        metavar="N",
        help="images with one exact image_name per hour before 429 (default: 30; 0: no limit)",
    )
    group.add_argument(
        "--autoenhance-daily-limit",
        type=int,
        metavar="N",
        help="images per key per day before new ones are created in the error state "
        "(default: no limit)",
    )
    # The ways of the undocumented behaviours (docs/fidelity/autoenhance.md).
    group.add_argument(
        "--autoenhance-content-type",
        choices=("honoured", "ignored"),
        default="honoured",
        help="honoured: URLs sign the declared content_type; ignored: they sign "
        "application/octet-stream whatever was declared (default: honoured)",
    )
    group.add_argument(
        "--autoenhance-upload-host",
        choices=("s3", "api"),
        default="s3",
        help="s3: pre-signed S3 upload URLs; api: URLs on the API host that need x-api-key "
        "(default: s3)",
    )
    group.add_argument(
        "--autoenhance-429-body",
        choices=("worded", "generic", "empty"),
        default="worded",
        help="429 bodies: worded (the name rule says so), generic (both 'Too Many Requests'), "
        "empty (default: worded)",
    )


def _add_scenario_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--scenario-model",
        action="append",
        dest="scenario_models",
        metavar="MODEL_ID",
        help="a Scenario model that exists from the start (repeatable)",
    )
    group.add_argument(
        "--scenario-auto-create",
        action="store_true",
        help="create any Scenario model a request names (default: unknown ids are 404)",
    )
    group.add_argument(
        "--scenario-batch-response",
        choices=("single", "list"),
        default="single",
        help="answer to an assetIds attach: one trainingImage (default, as documented) "
        "or a trainingImages list",
    )
    group.add_argument(
        "--scenario-image-limit",
        type=int,
        metavar="N",
        help="training images per model before the dataset-ceiling 429 (default: no limit)",
    )
    group.add_argument(
        "--scenario-pending-polls",
        type=int,
        default=0,
        metavar="N",
        help="GET /v1/uploads/ID answers 'validating' N times before 'imported' (default: 0)",
    )
    # The ways of the undocumented behaviours (docs/fidelity/scenario.md).
    group.add_argument(
        "--scenario-json-limit",
        type=_json_limit,
        default=6_000_000,
        metavar="BYTES",
        help="JSON bodies over this are 413 Request Too Long (default: 6000000)",
    )
    group.add_argument(
        "--scenario-asset-image",
        choices=("either", "data_url", "base64"),
        default="either",
        help="what POST /v1/assets takes as image (default: either)",
    )
    group.add_argument(
        "--scenario-entity-id",
        choices=("both", "job", "upload"),
        default="both",
        help="where a multipart upload names its asset: the upload's entityId, its job's "
        "metadata.output.entityId, or both (default: both)",
    )
    group.add_argument(
        "--scenario-entity-id-early",
        action="store_true",
        help="the upload shows entityId while still validating (default: once imported)",
    )


def _scenario_settings(args: argparse.Namespace) -> ScenarioSimSettings:
    from ingest.sim.settings import ScenarioSimSettings

    return ScenarioSimSettings(
        models=frozenset(args.scenario_models or ()),
        auto_create_models=args.scenario_auto_create,
        batch_response=args.scenario_batch_response,
        training_image_limit=args.scenario_image_limit,
        pending_polls=args.scenario_pending_polls,
        json_body_limit=args.scenario_json_limit,
        asset_image=args.scenario_asset_image,
        entity_id_from=args.scenario_entity_id,
        entity_id_when="early" if args.scenario_entity_id_early else "imported",
    )


def _modelhunter_settings(args: argparse.Namespace) -> ModelHunterSimSettings:
    from ingest.sim.settings import ModelHunterSimSettings

    limits = {}
    if args.modelhunter_max_mb is not None:
        limit = int(args.modelhunter_max_mb * 1_000_000)
        limits = {"max_size_bytes": limit, "image_max_bytes": limit}
    return ModelHunterSimSettings(
        sign_content_type=not args.modelhunter_unsigned_content_type,
        forget_expired=not args.modelhunter_keep_expired,
        complete_repeat=args.modelhunter_complete_repeat,
        throttle_body=args.modelhunter_throttle_body,
        **limits,
    )


def _autoenhance_settings(args: argparse.Namespace) -> AutoenhanceSimSettings:
    from ingest.sim.settings import AutoenhanceSimSettings

    return AutoenhanceSimSettings(
        url_field=args.autoenhance_url_field,
        rate=args.autoenhance_rate or None,
        same_name_limit=args.autoenhance_name_limit or None,
        daily_limit=args.autoenhance_daily_limit,
        content_type=args.autoenhance_content_type,
        upload_host=args.autoenhance_upload_host,
        body_429=args.autoenhance_429_body,
    )


def _megabytes(text: str) -> float:
    """An argparse type: a size in MB above 0 (the flag's own words, not a settings field's)."""
    value = _number(text, float, "a number of MB")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _json_limit(text: str) -> int:
    """An argparse type: a JSON body limit of at least 1024 bytes."""
    value = _number(text, int, "a whole number of bytes")
    if value < 1024:
        raise argparse.ArgumentTypeError(f"must be at least 1024 bytes, got {text}")
    return value


def _number(text: str, convert: type[_N], noun: str) -> _N:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {port}")
    return port


def run(args: argparse.Namespace) -> int:
    import signal

    import anyio

    from ingest.sim import FaultPlan, SimSettings, serve
    from ingest.sim.external import ExternalStoreError, external_storage
    from ingest.sim.settings import NovitaSimSettings

    try:
        settings = SimSettings(
            external_storage=None
            if args.storage_url is None
            else external_storage(
                args.storage_url,
                key_env=args.storage_key_env,
                secret_env=args.storage_secret_env,
                region=args.storage_region,
            ),
            host=args.host,
            port=args.port,
            url_lifetime_s=args.lifetime,
            api_keys=frozenset(args.keys) if args.keys else None,
            assets_id_as_string=args.assets_id_string,
            faults=FaultPlan.parse(args.faults),
            store_dir=args.store_dir,
            novita=NovitaSimSettings(error_body=args.novita_error_body),
            modelhunter=_modelhunter_settings(args),
            autoenhance=_autoenhance_settings(args),
            scenario=_scenario_settings(args),
        )
    except ValueError as exc:
        print(f"ingest sim: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with serve(settings) as sim:
                print(f"ingest sim listening on {sim.base_url}", flush=True)
                keys = "any non-empty key" if settings.api_keys is None else "--key values"
                where = settings.external_storage
                storage = "/s3" if where is None else f"{where.endpoint}/{where.bucket}"
                print(
                    f"ingest sim: providers: {', '.join(sim.providers)}; storage: {storage}; "
                    f"URL lifetime {settings.describe_lifetime()}; "
                    f"API keys: {keys}; faults: {settings.faults}; stop with Ctrl-C",
                    file=sys.stderr,
                    flush=True,
                )
                async for _ in signals:
                    break

    try:
        anyio.run(main, backend="asyncio", backend_options=backend_options())
    except ExternalStoreError as exc:  # a wrong --storage-url, bucket or key
        print(f"ingest sim: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the port is taken
        print(f"ingest sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
