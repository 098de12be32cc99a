"""``edgeformer agent``: serve this device to build machines (``serve``), make a token, ask an agent what it is."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from ..agent import AgentClient, resolve_token
from ..agent.server import AgentConfig, serve
from ..agent.wire import DEFAULT_PORT
from ..errors import ConfigError, OutputExistsError
from .common import JsonOpt, TokenFileOpt, VerboseOpt, command, console, err_console, print_json, setup_logging

app = typer.Typer(
    help="The device agent: profile on this device for a build machine (`agent serve`), over HTTP.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DeviceArg = Annotated[str, typer.Argument(help="The agent: agent://HOST:PORT.", show_default=False)]
_DEFAULT_STORE = Path(os.environ.get("EDGEFORMER_AGENT_STORE", "~/.cache/edgeformer/agent")).expanduser()
_MB = 1 << 20


@command
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one, printed).")] = DEFAULT_PORT,
    token_file: TokenFileOpt = None,
    store: Annotated[
        Path, typer.Option(help="Model store folder ($EDGEFORMER_AGENT_STORE).", show_default=False)
    ] = _DEFAULT_STORE,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Largest single file accepted, MB.")] = 512.0,
    store_cap_mb: Annotated[float, typer.Option(min=0.001, help="Store size, MB; least recently used goes.")] = 4096,
    queue: Annotated[int, typer.Option(min=1, help="Jobs that may wait; one more gets 503 + Retry-After.")] = 8,
    job_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds one job may run before it is killed.")] = 600.0,
    verbose: VerboseOpt = False,
) -> None:
    """Serve this device: builds machines upload models and profile them here, one job at a time.

    Each job runs in a child process with a timeout: a model that crashes or hangs the runtime fails its
    job, not the agent. Listens on 127.0.0.1 unless --host says otherwise; any other address needs a token
    (--token-file or $EDGEFORMER_AGENT_TOKEN). Plain HTTP: use an SSH tunnel or a VPN across untrusted networks.

    Examples:

      edgeformer agent token -o ~/.config/edgeformer/agent.token

      edgeformer agent serve --host 0.0.0.0 --token-file ~/.config/edgeformer/agent.token
    """
    setup_logging(verbose)
    config = AgentConfig(
        store=store,
        host=host,
        port=port,
        max_upload_bytes=int(max_upload_mb * _MB),
        store_cap_bytes=int(store_cap_mb * _MB),
        queue_size=queue,
        job_timeout_s=job_timeout,
        token=resolve_token(token_file=token_file),
    )
    serve(config, announce=lambda line: err_console.print(line, markup=False))


@command
def token_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (readable by you only).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the file if it exists.")] = False,
) -> None:
    """Write a new random token to a file (mode 600), for `agent serve --token-file` and its clients.

    Example: edgeformer agent token -o ~/.config/edgeformer/agent.token
    """
    out = out.expanduser()
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace the token (clients need the new one).")
    if out.parent and not out.parent.is_dir():
        raise ConfigError(f"{out.parent} is not a folder.")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    os.chmod(out, 0o600)
    console.print(f"wrote a new token to {out}")


@command
def info_cmd(device: DeviceArg, token_file: TokenFileOpt = None, json_out: JsonOpt = False) -> None:
    """What an agent's device is and runs: device card, backends and precisions, versions, store and queue.

    Example: edgeformer agent info agent://pi5.local:8765 --token-file pi5.token
    """
    info = AgentClient(device, resolve_token(token_file=token_file)).info()
    if json_out:
        print_json(info)
        return
    jobs = info.jobs
    backends = ", ".join(
        f"{b.name} ({'/'.join(b.precisions)})" if b.reason is None else f"{b.name}: no" for b in info.backends
    )
    rows = [
        ("device", info.device.label),
        ("device id", info.device.device_id),
        ("backends", backends),
        ("versions", " · ".join(f"{k} {v}" for k, v in sorted(info.versions.items()))),
        ("store", f"{info.store.models} models, {info.store.bytes / _MB:.1f} of {info.store.cap_bytes / _MB:.0f} MB"),
        ("jobs", f"{jobs.queued} queued of {jobs.capacity}, {jobs.done} done, {jobs.failed} failed"),
        ("job timeout", f"{info.job_timeout_s:g} s"),
    ]
    console.print(f"agent {device}")
    for key, value in rows:
        console.print(f"  {key:<12} {value}", markup=False)


app.command("serve")(serve_cmd)
app.command("token")(token_cmd)
app.command("info")(info_cmd)
