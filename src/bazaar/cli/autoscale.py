"""`bazaar autoscale`: the controller that `bazaar up --autoscale` has supervisord run."""

from pathlib import Path
from typing import Annotated

import typer

from bazaar.cli import app


@app.command(hidden=True)
def autoscale(
    data_dir: Annotated[Path, typer.Option(help="The data folder of the running `bazaar up`.")],
) -> None:
    """Scale the API instances of the services `up --autoscale` named, until SIGTERM."""
    from bazaar.runtime.cluster import autoscale as controller
    from bazaar.runtime.cluster.folder import Folder

    controller.run(Folder(data_dir), lambda line: print(line, flush=True))
