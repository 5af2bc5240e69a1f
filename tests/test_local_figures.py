"""A local check records figures with the kernel prelude's own recorder (graders/kernel/prelude.py), not a copy."""

from __future__ import annotations

import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from graders import local  # noqa: E402


class FakeShell:
    """What the prelude's recorder needs of IPython's shell: its events."""

    def __init__(self) -> None:
        self.registered: list[tuple[str, object]] = []
        self.events = types.SimpleNamespace(callbacks={"post_execute": []}, register=lambda name, fn: self.registered.append((name, fn)))


@pytest.fixture
def matplotlib_restored():
    from matplotlib import _pylab_helpers
    from matplotlib.figure import Figure

    saved = (_pylab_helpers.Gcf.destroy, _pylab_helpers.Gcf.destroy_all, Figure.savefig)
    yield
    _pylab_helpers.Gcf.destroy, _pylab_helpers.Gcf.destroy_all, Figure.savefig = saved


def test_local_checks_record_figures_with_the_kernel_preludes_own_code(matplotlib_restored) -> None:
    assert not hasattr(local, "describe_figure"), "the figure description lives in graders/kernel/prelude.py only"
    shell = FakeShell()
    recorder = local.prelude_figure_recorder(shell)
    figures, hook_matplotlib = recorder["figure_recorder"]()
    hook_matplotlib(None)
    fig, axes = plt.subplots(1, 2)
    axes[0].plot([0, 1, 2], [3, 2, 1], label="train")
    axes[0].plot([0, 1, 2], [3, 2, 2], linestyle=":", label="test")
    axes[0].legend()
    axes[1].imshow([[0, 1], [1, 0]])
    axes[1].set_title("7")
    fig.suptitle("losses")
    plt.close(fig)
    [record] = figures()
    assert record["suptitle"] == "losses"
    assert [line["linestyle"] for line in record["axes"][0]["lines"]] == ["-", ":"]
    assert record["axes"][0]["legend"] == ["train", "test"]
    assert record["axes"][1]["title"] == "7" and record["axes"][1]["images"] == 1
    assert record["axes"][1]["geometry"] == [1, 2, 0, 1]
    assert [name for name, _ in shell.registered] == ["pre_run_cell"]
    assert len(shell.events.callbacks["post_execute"]) == 1
