"""What every tracker does the same way with a run's files, whatever carries them to MLflow:
figures are drawn from plot frames (by the run's plotter) and sent as PNG bytes; checkpoints are
written atomically in place where the artifact store is a local folder, else written to a temporary
file and uploaded. ``TrackerProcess`` sends frames, not figures: drawing happens in its child.

No MLflow import here: ``TrackerProcess`` (MLflow in a child process) shares this with ``Tracker``.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

from ganlab.atomic_files import save_atomic
from ganlab.stored_runs import CHECKPOINT_DIR

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ganlab.frames import Frame
    from ganlab.plots.plotter import Plotter


def figure_png(fig: Figure) -> bytes:
    """The figure as a PNG (matplotlib's defaults, as ``MlflowClient.log_figure`` saves it); closes it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


class RunFiles:
    """Figure and checkpoint handling on top of five primitives a tracker provides:
    ``artifact_uri``, ``log_artifact``, ``log_png``, ``delete_remote_artifact`` and ``plotter``."""

    artifact_uri: str

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        raise NotImplementedError

    def log_png(self, data: bytes, path: str) -> None:
        raise NotImplementedError

    def delete_remote_artifact(self, path: str) -> None:
        raise NotImplementedError

    def plotter(self) -> Plotter:
        """The plotter of the run's target (draws frames, animations and metric curves)."""
        raise NotImplementedError

    def log_figure(self, fig: Figure, path: str) -> None:
        self.log_png(figure_png(fig), path)

    def log_frame(self, frame: Frame, metrics: dict[str, float], path: str) -> None:
        """One plotted iteration's figure (samples, D's output, the metrics in its title)."""
        self.log_figure(self.plotter().figure(frame, metrics), path)

    def log_animation(self, frames: list[Frame], path: str) -> None:
        """All plotted iterations as a GIF."""
        folder, _, name = path.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            self.log_artifact(self.plotter().animate(frames, Path(tmp) / name), folder or None)

    def log_metric_curves(self, rows: list[dict[str, float]], path: str) -> None:
        self.log_figure(self.plotter().metric_curves(rows), path)

    def local_artifact_dir(self) -> Path | None:
        """The run's artifact folder when the artifact store is a local one, else None."""
        parsed = urlparse(self.artifact_uri)
        return Path(url2pathname(parsed.path)) if parsed.scheme == "file" else None

    def save_checkpoint(self, state: dict, name: str) -> None:
        """Into the run's artifacts, atomically: written in place with a rename where the artifact
        store is a local folder, else written atomically to a temporary file and uploaded."""
        local = self.local_artifact_dir()
        if local is not None:
            save_atomic(state, local / CHECKPOINT_DIR / name)
            return
        with tempfile.TemporaryDirectory() as tmp:
            self.log_artifact(save_atomic(state, Path(tmp) / name), CHECKPOINT_DIR)

    def delete_checkpoint(self, path: str) -> None:
        local = self.local_artifact_dir()
        if local is not None:
            (local / path).unlink(missing_ok=True)
        else:
            self.delete_remote_artifact(path)
