"""Options shared by several commands, and the helpers that resolve them."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from clipsearch.config import INDEX_ENV, PRESETS, Settings, default_index_dir, resolve_model
from clipsearch.media.kinds import KINDS

index_option = click.option(
    "--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help=f"Index directory [default: ${INDEX_ENV} or a per-user data directory].")
model_option = click.option(
    "--model", default=None,
    help=f"Preset ({', '.join(PRESETS)}), open_clip architecture name, or model-config JSON path.")
pretrained_option = click.option(
    "--pretrained", default=None, help="open_clip pretrained tag, or a local weights file.")
device_option = click.option("--device", default=None, help="cpu, cuda, cuda:1 … [default: auto]")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def index_root(index_dir: Path | None) -> Path:
    """The index directory: --index, else $CLIPSEARCH_INDEX, else the per-user default."""
    return (index_dir or default_index_dir()).expanduser().absolute()


def load_model(root: Path, model: str | None, pretrained: str | None, settings: Settings):
    """The encoder to use: --model/--pretrained when given, else the model of the index at `root`
    when there is one (an index is only ever used with its own model), else the default preset."""
    return model_loader(root, model, pretrained, settings)()


def model_loader(root: Path, model: str | None, pretrained: str | None, settings: Settings):
    """`load_model`'s choice as a picklable `() -> Encoder`, for processes that load their own copy."""
    import functools

    from clipsearch import load_encoder, open_index
    from clipsearch.store.manifest import FILENAME

    if model is None and pretrained is None and (root / FILENAME).exists():
        identity = open_index(root).identity
        arch, weights = identity.model, identity.pretrained
    else:
        arch, weights = resolve_model(model, pretrained)
    return functools.partial(load_encoder, arch, weights, settings.device, settings.batch_size,
                             settings.fast_encoder)


def encoder_loader(root: Path, model: str | None, pretrained: str | None, settings: Settings):
    """An `index` run's picklable `() -> encoder`: the exported image tower where `image_tower` allows
    it, else `model_loader`'s model. Decided where it is called, so a Ray actor on a node with a GPU
    loads the model, and one on a CPU node skips torch as the driver does."""
    import functools

    return functools.partial(_tower_or_model, root, model, pretrained, settings,
                             model_loader(root, model, pretrained, settings))


def _tower_or_model(root: Path, model: str | None, pretrained: str | None, settings: Settings, load):
    return image_tower(root, model, pretrained, settings) or load()


def image_tower(root: Path, model: str | None, pretrained: str | None, settings: Settings):
    """The exported image tower (`imagetower`) of the index at `root`, for an `index` run that would
    encode with its own fp32 model on a CPU, and only if its text tower is exported too (the run
    can't export it without the model); else None, and the run loads the model as before."""
    from clipsearch import open_index
    from clipsearch.config import default_cache_dir
    from clipsearch.models import imagetower, texttower
    from clipsearch.store.manifest import FILENAME

    if model is not None or pretrained is not None or settings.fast_encoder or not _on_cpu(settings.device):
        return None
    if not (root / FILENAME).exists():
        return None
    identity, cache = open_index(root).identity, default_cache_dir()
    if not texttower.exported(cache, identity):
        return None
    return imagetower.ImageTower.load(cache, identity, settings.batch_size)


def _on_cpu(device: str) -> bool:
    """Whether the model would run on the CPU, decided without importing torch: "auto" means the CPU
    on a Mac and on a Linux without NVIDIA's driver; on other systems we can't tell, so no."""
    if device in ("auto", None):
        return sys.platform == "darwin" or (sys.platform == "linux" and not Path("/dev/nvidiactl").exists())
    return device == "cpu"


def filter_options(fn):
    """--after/--before/--camera/--place/--near/--in/--type/--min-size: the images a command may return."""
    opts = [
        click.option("--after", metavar="DATE", default=None, help="Taken on or after DATE: 2023, 2023-07 or 2023-07-14."),
        click.option("--before", metavar="DATE", default=None, help="Taken on or before DATE (its whole year, month or day)."),
        click.option("--camera", metavar="TEXT", default=None, help="Camera make, model or lens contains TEXT (any case)."),
        click.option("--place", metavar="TEXT", default=None, help="City, region or country contains TEXT (any case)."),
        click.option("--near", metavar="LAT,LON[,KM]", default=None, help="Taken within KM (default 10) of LAT,LON."),
        click.option("--in", "folders", metavar="FOLDER", multiple=True, type=click.Path(path_type=Path),
                     help="Only images under FOLDER (repeat for several)."),
        click.option("--type", "kind", type=click.Choice(KINDS), default=None,
                     help="Only this kind of file."),
        click.option("--min-size", metavar="WxH", default=None, help="At least W pixels wide and H high."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def filter_from(after, before, camera, place, near, folders, kind, min_size):
    """The Filter the filter options ask for (falsy when none is given)."""
    from clipsearch.store.filters import make_filter

    return make_filter(after=after, before=before, camera=camera, place=place, near=near,
                       folders=[str(f) for f in folders], kind=kind, min_size=min_size)
