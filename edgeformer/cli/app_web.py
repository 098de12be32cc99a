"""``edgeformer app``: the on-device demo apps; ``app web`` serves the browser demo (``apps/web``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..webapp import make_server
from .common import command, console

app = typer.Typer(
    help="On-device demo apps: `app web` serves the browser demo on onnxruntime-web.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("web")
@command
def web_cmd(
    artifacts: Annotated[
        list[Path], typer.Argument(help="ONNX artifact folders (or .onnx files with a manifest).", show_default=False)
    ],
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port on 127.0.0.1 (0: a free one).")] = (
        8000
    ),
    no_isolation: Annotated[
        bool,
        typer.Option(
            "--no-isolation",
            help="Leave out the COOP/COEP headers: the page is not cross-origin isolated, so onnxruntime-web runs "
            "one thread (the page says so).",
        ),
    ] = False,
    web_root: Annotated[
        Path | None,
        typer.Option(
            "--web-root", help="The page's folder (default: $EDGEFORMER_WEB_ROOT, else this checkout's apps/web)."
        ),
    ] = None,
) -> None:
    """Serve the browser demo for ARTIFACTs on 127.0.0.1 until Ctrl-C.

    The page runs the model on onnxruntime-web (WebAssembly, threaded when the page is cross-origin isolated;
    WebGPU when the browser offers it) and preprocesses from the artifact's manifest: images from a file, a
    drop or the webcam; keywords from the microphone, streamed in 1 s windows.

    \b
    Example:
      npm ci --prefix apps/web                         # once: onnxruntime-web, pinned
      edgeformer export digits_shvit -o digits && edgeformer export keywords_audioformer -o kws
      edgeformer app web digits kws --port 8000        # then open http://127.0.0.1:8000/
    """
    server = make_server(artifacts, port=port, isolation=not no_isolation, web_root=web_root)
    names = ", ".join(m.name for m in server.models)
    threads = "threads available" if server.isolation else "no isolation headers: one thread"
    # the URL alone on the first line, so a script can read it (with --port 0 it is the only way to know the port)
    console.print(server.url, markup=False, soft_wrap=True)
    console.print(f"serving {names} ({threads}); Ctrl-C stops", markup=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped", markup=False)
    finally:
        server.server_close()
