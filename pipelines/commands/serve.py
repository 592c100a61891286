"""`loyal serve` and `loyal bento build`: thin shells over the serving package.

`serve` runs the BentoML service on the registered champions in a `bentoml serve` subprocess,
prints example `curl` calls once it answers, and stops it on Ctrl+C. `build_bento` imports the
champions into the BentoML model store under pinned tags and builds the Bento.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loyal.settings import Settings, get_settings

if TYPE_CHECKING:
    from bentoml import Bento

    from models.offers import Catalog

EXAMPLE_CUSTOMER = "C0000001"

bento_app = typer.Typer(help="Package the service as a Bento.", no_args_is_help=True)


def example_requests(
    customer_id: str, catalog: Catalog | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """One example body per endpoint, for the customer given, on the catalog's channels.

    Args:
        customer_id: the customer the examples ask about.
        catalog: the home's offer catalog (default: the sample bank's channels and offer).
    """
    first, agent, action = "atm", "call_center", "hys_move_idle_cash"
    if catalog is not None:
        first = catalog.channels[0]
        agent = "call_center" if "call_center" in catalog.channels else catalog.channels[-1]
        offers = [o for o in catalog.offers if first in o.channels] or list(catalog.offers)
        action = offers[0].id
    return [
        ("/next_best_action", {"customer_id": customer_id, "channel": first}),
        ("/next_best_action", {"customer_id": customer_id, "channel": agent, "k": 3}),
        ("/recommend", {"customer_id": customer_id, "k": 3}),
        ("/churn_score", {"customer_ids": [customer_id]}),
        ("/segment", {"customer_id": customer_id}),
        (
            "/feedback",
            {
                "customer_id": customer_id,
                "action_id": action,
                "channel": first,
                "outcome": "declined",
            },
        ),
    ]


def example_curls(
    url: str, customer_id: str, api_key_header: str | None = None, catalog: Catalog | None = None
) -> list[str]:
    """`curl` command lines calling each endpoint (the key read from the environment)."""
    auth = f' -H "{api_key_header}: $LOYAL_SERVING__API_KEY"' if api_key_header else ""
    return [
        f"curl -s -X POST {url}{path} -H 'Content-Type: application/json'{auth} "
        f"-d {shlex.quote(json.dumps(body))}"
        for path, body in example_requests(customer_id, catalog)
    ]


def a_customer(settings: Settings) -> str:
    """A customer id from the loaded data (the example's fallback when none is loaded)."""
    path = settings.paths.contract_dir / "customers.parquet"
    if not path.is_file():
        return EXAMPLE_CUSTOMER
    import pyarrow.parquet as pq

    column = pq.read_table(path, columns=["customer_id"]).column(0)
    return str(column[0]) if len(column) else EXAMPLE_CUSTOMER


def _status(url: str, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(
        url + "/status", data=b"{}", headers={"Content-Type": "application/json", **headers}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def serve(
    settings: Settings,
    port: int = 3000,
    host: str = "127.0.0.1",
    workers: int | None = None,
    timeout: float = 180.0,
) -> None:
    """Run the service on the registered champions until interrupted (Ctrl+C).

    Args:
        settings: the Loyal home (MLflow registry, Feast store, runtime folder).
        port: where to listen.
        host: the interface (127.0.0.1: this machine only).
        workers: BentoML worker processes (default: `LOYAL_SERVING__WORKERS`, else 1).
        timeout: seconds to wait for the service to answer.
    """
    from loyal.logs import console
    from serving.process import check_port_free, start_server

    options = settings.serving
    env = {} if workers is None else {"LOYAL_SERVING__WORKERS": str(workers)}
    check_port_free(port, host)
    server = start_server(settings.home, port=port, host=host, env=env)
    _stop_on_sigterm()
    try:
        server.wait("/livez", timeout)
        headers = {}
        if options.auth_enabled and options.api_key is not None:
            headers = {options.api_key_header: options.api_key.get_secret_value()}
        _settle(server)
        _still_running(server)
        status = _status(server.url, headers)
        _print_ready(console, server.url, status, settings, options)
        server.process.wait()
    except KeyboardInterrupt:
        console.print("stopping the service")
    finally:
        server.stop()


def _stop_on_sigterm() -> None:
    """SIGTERM stops the service like Ctrl+C does (the server runs in its own process group)."""
    import signal
    import threading

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _still_running(server: Any) -> None:
    """The answers came from our server, not from something that took the port meanwhile."""
    from serving.process import ServerError

    if server.process.poll() is not None:
        raise ServerError(
            f"the service exited with code {server.process.returncode}:\n{server.log_tail()}"
        )


def _settle(server: Any, seconds: float = 10.0) -> None:
    """Give /readyz a few seconds to turn 200 (missing champions keep it 503: still serving)."""
    from serving.process import ServerError

    with contextlib.suppress(ServerError):
        server.wait("/readyz", seconds)


def _print_ready(
    console: Any, url: str, status: dict[str, Any], settings: Settings, options: Any
) -> None:
    state = "ready" if status.get("ready") else "answering, degraded"
    console.rule(f"[bold green]Loyal is serving on {url} ({state})")
    console.print(
        f"models: {status.get('model_versions')}  features: {status.get('feature_store')}"
    )
    for reason in status.get("degraded_reasons", []):
        console.print(f"[yellow]degraded:[/] {reason}")
    console.print(f"OpenAPI page: {url}/   metrics: {url}/metrics   readiness: {url}/readyz")
    header = options.api_key_header if options.auth_enabled else None
    for line in example_curls(url, a_customer(settings), header, _home_catalog(settings)):
        console.print(line, highlight=False, soft_wrap=True)
    console.print("Press Ctrl+C to stop.")


def _home_catalog(settings: Settings) -> Catalog | None:
    """The offer catalog the service loaded (None if it cannot be read: the service said why)."""
    from features.tables_io import recorded_catalog
    from models.offers import CatalogError, choose_catalog, load_catalog

    options = settings.serving
    try:
        path, _ = choose_catalog(options.catalog_path, options.catalog, recorded_catalog(settings))
        return load_catalog(path)
    except CatalogError:
        return None


def build_bento(
    settings: Settings, models: tuple[str, ...] | None = None, version: str | None = None
) -> Bento:
    """Import the champions into the BentoML model store (pinned tags) and build the Bento.

    Args:
        settings: where the MLflow registry lives.
        models: registered models to pack (default: the serving settings' models).
        version: the Bento version (default: generated).

    Returns:
        The built Bento; run it with `bentoml serve <tag>` from the Loyal home.
    """
    from serving.bento import build_bento as build

    names = models if models is not None else settings.serving.models
    return build(settings, names, version=version)


def serve_command(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface (0.0.0.0: every interface).")] = "127.0.0.1",
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
) -> None:
    """Serve next best actions, cross-sell, churn and segments over HTTP from the champions."""
    serve(get_settings(), port=port, host=host, workers=workers)


@bento_app.command("build")
def build_command(
    models: Annotated[
        str | None, typer.Option(help="Comma-separated registered models to pack.")
    ] = None,
    version: Annotated[str | None, typer.Option(help="Bento version (default: generated).")] = None,
) -> None:
    """Pack the champions (pinned versions) and the service into a Bento."""
    names = tuple(m.strip() for m in models.split(",") if m.strip()) if models else None
    bento = build_bento(get_settings(), names, version)
    typer.echo(json.dumps({"bento": str(bento.tag), "path": str(Path(bento.path))}))
