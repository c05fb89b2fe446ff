"""How the command line fails: one line and a hint, the documented exit code, no traceback; a run that fails or
is interrupted leaves the saved models (and `latest`) and the reports as they were."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clv.cli import app
from clv.errors import DataError, FitError

from .conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def write_config(tmp_path: Path, text: str | None = None) -> Path:
    text = text or (ROOT / "configs" / "cdnow.yaml").read_text()
    text = text.replace("reports_dir: reports", f"reports_dir: {tmp_path / 'reports'}")
    text = text.replace("models_dir: models", f"models_dir: {tmp_path / 'models'}")
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def one_line_error(result, code: int) -> str:
    """The command failed with `code`, printing `error:` and a hint and no traceback; the error's text."""
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # ended through typer.Exit, not an error
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run: its config, and the models and reports it left."""
    tmp_path = tmp_path_factory.mktemp("finished")
    config = write_config(tmp_path)
    result = invoke("run", str(config), "-q")
    assert result.exit_code == 0, result.stderr
    return config, tmp_path / "models", tmp_path / "reports"


@pytest.fixture
def run_folders(finished, tmp_path):
    """A copy of the finished run's folders for a test that tries to change them; config, models, reports."""
    import shutil

    _, models, reports = finished
    config = write_config(tmp_path)
    shutil.copytree(models, tmp_path / "models")
    shutil.copytree(reports, tmp_path / "reports")
    return config, tmp_path / "models", tmp_path / "reports"


# --- 1. no traceback without --verbose -------------------------------------------------------------------


def test_an_impossible_date_in_the_config_file_is_a_config_error(tmp_path):
    config = write_config(tmp_path, (FIXTURES / "impossible_date.yaml").read_text())
    line = one_line_error(invoke("run", str(config)), 2)
    assert "time.calibration_end" in line and "1997-31-09" in line
    assert "hint: dates are written YYYY-MM-DD" in invoke("check-config", str(config)).stderr


@pytest.mark.parametrize("key", ["time.calibration_end", "time.holdout_end"])
def test_an_impossible_date_given_with_set_is_a_config_error(key):
    result = invoke("check-config", str(ROOT / "configs" / "cdnow.yaml"), "--set", f"{key}=1997-31-09")
    line = one_line_error(result, 2)
    assert key in line and "month value is outside expected range" in line


def test_dates_still_read_as_dates():
    # the YAML reader leaves dates as text for the validation: a good config gives the same resolved dates
    result = invoke("check-config", str(ROOT / "configs" / "cdnow.yaml"))
    assert result.exit_code == 0 and "calibration_end: '1997-09-30'" in result.stdout


def test_broken_yaml_is_one_line_with_its_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [cdnow\ndata: {source: cdnow}\n")
    line = one_line_error(invoke("check-config", str(bad)), 2)
    assert "not valid YAML: line " in line and "column" in line


def _must_not_read(*args, **kwargs):
    raise AssertionError("the data was read before the output folders were checked")


@pytest.mark.parametrize("key", ["output.reports_dir", "output.models_dir"])
@pytest.mark.parametrize("below", ["", "/sub"])
def test_an_output_folder_that_is_a_file_is_refused_before_reading(tmp_path, monkeypatch, key, below):
    monkeypatch.setattr("clv.pipeline.prepare_data", _must_not_read)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    result = invoke("run", str(write_config(tmp_path)), "--set", f"{key}={blocker}{below}")
    line = one_line_error(result, 2)
    assert f"{key}: {blocker} is a file, not a folder" in line
    assert f"hint: set {key} to a folder" in result.stderr


@pytest.mark.parametrize(
    ("command", "key"),
    [("train", "output.models_dir"), ("score", "output.reports_dir"), ("evaluate", "output.reports_dir")],
)
def test_every_writing_command_checks_its_output_folder(tmp_path, monkeypatch, command, key):
    monkeypatch.setattr("clv.pipeline.prepare_data", _must_not_read)
    monkeypatch.setattr("clv.pipeline.load_transactions", _must_not_read)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    extra = ["--model", str(tmp_path)] if command == "score" else []
    result = invoke(command, str(write_config(tmp_path)), *extra, "--set", f"{key}={blocker}")
    assert f"{key}: {blocker} is a file" in one_line_error(result, 2)


def test_a_folder_without_write_permission_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("clv.pipeline.prepare_data", _must_not_read)
    monkeypatch.setattr("clv.pipeline.os.access", lambda path, mode: Path(path) != tmp_path / "locked")
    (tmp_path / "locked").mkdir()
    result = invoke("run", str(write_config(tmp_path)), "--set", f"output.reports_dir={tmp_path / 'locked'}")
    assert f"output.reports_dir: {tmp_path / 'locked'} is not writable" in one_line_error(result, 2)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("clv.pipeline.prepare_data", _must_not_read)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = invoke("run", str(write_config(tmp_path)), "--set", f"output.models_dir={locked}")
        assert "is not writable" in one_line_error(result, 2)
    finally:
        locked.chmod(0o755)


def test_ids_that_read_as_one_value_never_reach_a_merge(tmp_path):
    # 00002 and 2: the reader once took the column for integers and made them one id; the merge after the fit
    # raised a pandas MergeError. Ids are text as written: two customers, and the run goes through.
    source = f"data.source={FIXTURES / 'colliding_ids.csv'}"
    period = ["--set", "time.calibration_end=1997-03-31", "--set", "time.holdout_end=1997-05-31"]  # the file's
    result = invoke("run", str(write_config(tmp_path)), "--set", source, *period, "-q")
    assert result.exit_code == 0, result.output
    customers = pd.read_csv(tmp_path / "reports" / "cdnow" / "customers.csv", dtype={"customer_id": str})
    assert {"00002", "2"} <= set(customers["customer_id"])
    assert customers["customer_id"].is_unique


def test_repeated_ids_are_refused_before_the_fit(cdnow_rfm):
    from clv.config import load_config
    from clv.data.rfm import RfmSummary
    from clv.pipeline import DataStep, check_unique_ids, fit_models, score

    frame = pd.concat([cdnow_rfm, cdnow_rfm.iloc[[3, 7]]], ignore_index=True)
    first = ", ".join(str(i) for i in cdnow_rfm["customer_id"].iloc[[3, 7]])
    with pytest.raises(DataError, match=rf"2 customer id\(s\) stand for more than one customer .*first: {first}"):
        check_unique_ids(frame, "test")
    config = load_config(ROOT / "configs" / "cdnow.yaml")
    fitted = fit_models(config, cdnow_rfm)
    data = DataStep(None, None, RfmSummary(frame, "W", config.time.calibration_end, None))
    with pytest.raises(DataError, match="stand for more than one customer"):
        score(config, fitted, data)


def test_an_rfm_table_with_a_repeated_id_is_one_line(tmp_path):
    result = invoke("run", str(write_config(tmp_path)), "--set", f"data.source={FIXTURES / 'rfm_repeated_id.csv'}")
    assert "appear twice" in one_line_error(result, 1)
    assert "hint: an RFM table has one row per customer" in result.stderr


def test_a_header_without_rows_says_what_to_check(tmp_path):
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("customer_id,date,amount\n")
    result = invoke("run", str(write_config(tmp_path)), "--set", f"data.source={header_only}")
    assert "no transactions" in one_line_error(result, 1) and "hint: check that data.source" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--set", f"data.source={FIXTURES / 'wrong_columns.csv'}"], 1, "column(s) not found"),
        (["--set", f"data.source={FIXTURES / 'empty.csv'}"], 1, "empty.csv"),
        (["--set", f"data.source={FIXTURES}"], 1, "a folder, not a file"),
        (["--set", "data.source=no_such_file.csv"], 1, "no such file"),
        (["--set", "nope.key=1"], 2, "nope: unknown key"),
        (["--set", "time.unitx=W"], 2, "time.unitx: unknown key"),
        (["--set", "model=1"], 2, "model:"),
        (["--set", "no_equals_sign"], 2, "expected KEY=VALUE"),
        (["--set", "data.source.x=1"], 2, "source is a value, not a section"),
    ],
)
def test_bad_inputs_of_a_new_user_are_one_line(tmp_path, args, code, words):
    result = invoke("run", str(write_config(tmp_path)), *args)
    assert words in one_line_error(result, code)


def test_an_empty_data_file_is_one_line(tmp_path):
    empty = tmp_path / "zero_bytes.csv"
    empty.write_bytes(b"")
    one_line_error(invoke("run", str(write_config(tmp_path)), "--set", f"data.source={empty}"), 1)


def test_a_config_that_is_a_folder_or_not_text_is_one_line(tmp_path):
    assert "is a folder, not a config file" in one_line_error(invoke("check-config", str(tmp_path)), 2)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xf0\x28\x8c\x28\n")
    assert "cannot be read as a text file" in one_line_error(invoke("check-config", str(binary)), 2)


def test_a_config_that_is_a_list_is_one_line():
    line = one_line_error(invoke("run", str(FIXTURES / "config_is_a_list.yaml")), 2)
    assert "expected a mapping of sections, got list" in line


def test_score_with_a_model_path_that_is_not_there_is_one_line(tmp_path):
    result = invoke("score", str(write_config(tmp_path)), "--model", str(tmp_path / "nowhere"))
    assert "no saved model" in one_line_error(result, 1)


def test_error_text_is_printed_as_written(tmp_path):
    # rich would read "[bold]" in a message as markup and drop it
    result = invoke("check-config", str(ROOT / "configs" / "cdnow.yaml"), "--set", "time.unit='[bold]'")
    assert "[bold]" in one_line_error(result, 2)


# --- 2. a failed or interrupted run moves nothing ----------------------------------------------------------


def test_a_failed_fit_is_marked_failed_and_leaves_the_saved_run(run_folders, monkeypatch):
    config, models, reports = run_folders
    before_models, before_reports = snapshot(models), snapshot(reports)

    def failing(*args, **kwargs):
        raise FitError("the optimiser failed", hint="try more starts")

    monkeypatch.setattr("clv.pipeline.fit_models", failing)
    result = invoke("run", str(config))
    assert "the optimiser failed" in one_line_error(result, 1)
    assert "✗ fit (mle) failed" in result.stderr and "✓ fit" not in result.stderr
    assert "✓ read, validate and summarise" in result.stderr
    assert snapshot(models) == before_models and snapshot(reports) == before_reports


@pytest.mark.parametrize("stop", ["disk full", "Ctrl-C"])
def test_a_run_stopped_while_writing_saves_no_model(run_folders, monkeypatch, stop):
    config, models, reports = run_folders
    before_models, before_reports = snapshot(models), snapshot(reports)
    latest = (models / "cdnow" / "latest").read_text()

    def failing(*args, **kwargs):
        # by now the model is written to its staging folder, not yet renamed into place
        assert [p.name for p in (models / "cdnow").iterdir() if p.name.startswith(".saving.")]
        if stop == "Ctrl-C":
            raise KeyboardInterrupt
        raise OSError(28, "No space left on device", "report.html")

    monkeypatch.setattr("clv.report.outputs.build_report", failing)
    result = invoke("run", str(config))
    if stop == "Ctrl-C":
        assert result.exit_code == 130 and result.stderr.rstrip().endswith("interrupted")
        assert "✗ write the reports and save the model interrupted" in result.stderr
    else:
        assert "No space left on device: report.html" in one_line_error(result, 1)
        assert "✗ write the reports and save the model failed" in result.stderr
    assert (models / "cdnow" / "latest").read_text() == latest
    assert snapshot(models) == before_models and snapshot(reports) == before_reports  # no staging folder left


def test_ctrl_c_during_the_fit_exits_130(run_folders, monkeypatch):
    config, models, reports = run_folders
    before_models, before_reports = snapshot(models), snapshot(reports)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("clv.pipeline.fit_models", interrupted)
    result = invoke("run", str(config))
    assert result.exit_code == 130 and isinstance(result.exception, SystemExit)
    assert "✗ fit (mle) interrupted" in result.stderr and "interrupted\n" in result.stderr
    assert "Traceback" not in result.stderr and "error:" not in result.stderr
    assert snapshot(models) == before_models and snapshot(reports) == before_reports


def test_train_interrupted_while_saving_leaves_latest(run_folders, monkeypatch):
    config, models, _ = run_folders
    before = snapshot(models)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("clv.store._publish", interrupted)
    result = invoke("train", str(config))
    assert result.exit_code == 130 and "✗ save the model interrupted" in result.stderr
    assert snapshot(models) == before


def test_an_unfinished_save_is_never_loaded(run_folders):
    _, models, _ = run_folders
    run = models / "cdnow" / (models / "cdnow" / "latest").read_text().strip()
    unfinished = models / "cdnow" / ".saving.abc123"
    unfinished.mkdir()
    for file in run.iterdir():  # even a complete copy: a staging folder is a save that did not finish
        (unfinished / file.name).write_bytes(file.read_bytes())
    from clv.errors import ModelFileError
    from clv.store import load_models

    with pytest.raises(ModelFileError, match="unfinished save"):
        load_models(unfinished)


def _cli_with_a_slow_fit(config: Path) -> subprocess.Popen[str]:
    """`clv run CONFIG` in a child process whose fit takes a minute (time.sleep), so a signal lands in it."""
    code = (
        "import time, clv.pipeline\n"
        "clv.pipeline.fit_models = lambda *a, **k: time.sleep(60)\n"
        "from clv.cli import main\n"
        "main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, "run", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _signal_during_the_fit(process: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    """Send `signum` once the child shows the data step done (its fit has begun); its stdout and stderr."""
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in process.stderr:
        seen.append(line)
        if "read, validate and summarise" in line or time.monotonic() > deadline:
            break
    time.sleep(0.5)
    process.send_signal(signum)
    out, rest = process.communicate(timeout=60)
    return out, "".join(seen) + rest


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_a_signal_during_the_fit_stops_the_run_cleanly(run_folders, signum, code):
    config, models, reports = run_folders
    before_models, before_reports = snapshot(models), snapshot(reports)
    process = _cli_with_a_slow_fit(config)
    out, err = _signal_during_the_fit(process, signum)
    assert process.returncode == code, err
    assert "✗ fit (mle) interrupted" in err and "Traceback" not in err
    if signum == signal.SIGINT:
        assert err.rstrip().endswith("interrupted")
    assert "model saved" not in out
    assert snapshot(models) == before_models and snapshot(reports) == before_reports


@pytest.mark.slow
def test_ctrl_c_while_pymc_samples_is_not_a_finished_run(run_folders):
    # PyMC catches KeyboardInterrupt and returns the draws so far; the run must stop, not save a short posterior
    config, models, reports = run_folders
    before_models, before_reports = snapshot(models), snapshot(reports)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # many draws, so that the sampler (nutpie, compiled in a few seconds) is still running when Ctrl-C comes
    long = ["--set", "model.method=bayes", "--set", "bayes.inference=nuts", "--set", "bayes.draws=50000"]
    args = [sys.executable, "-m", "clv.cli", "run", str(config), *long]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "read, validate and summarise" in line:
            break
    time.sleep(12)
    process.send_signal(signal.SIGINT)
    out, rest = process.communicate(timeout=120)
    err = "".join(seen) + rest
    assert process.returncode == 130, err
    assert "✗ fit (bayes) interrupted" in err and err.rstrip().endswith("interrupted")
    assert "model saved" not in out
    assert snapshot(models) == before_models and snapshot(reports) == before_reports


# --- 3. a saved model without a spend model ---------------------------------------------------------------


def test_score_refuses_a_model_without_spend_when_the_config_has_amounts(run_folders):
    config, models, reports = run_folders
    trained = invoke("train", str(config), "--set", "data.amount=null", "-q")
    assert trained.exit_code == 0, trained.stderr
    no_spend = Path(trained.stdout.split("model saved to ")[1].strip().rstrip("/"))
    assert json.loads((no_spend / "model.json").read_text())["spend_model"] is None
    before, before_models = snapshot(reports), snapshot(models)
    result = invoke("score", str(config), "--model", str(no_spend))
    line = one_line_error(result, 2)
    assert "the saved model has no spend model" in line and "model.spend is gamma_gamma" in line
    assert "hint: retrain with amounts" in result.stderr
    assert "✗ check the model against the config and data failed" in result.stderr
    assert snapshot(reports) == before and snapshot(models) == before_models  # the previous run's reports intact
    ok = invoke("score", str(config), "--model", str(no_spend), "--set", "data.amount=null", "-q")
    assert ok.exit_code == 0, ok.stderr


def test_score_refuses_a_spend_model_on_data_without_amounts(run_folders):
    config, models, reports = run_folders
    before = snapshot(reports)
    result = invoke("score", str(config), "--model", str(models / "cdnow"), "--set", "data.amount=null")
    assert "has a spend model, but this data has no amounts" in one_line_error(result, 2)
    assert snapshot(reports) == before


def test_reports_interrupted_between_the_two_renames_are_put_back(tmp_path, monkeypatch):
    from clv.report.files import staged_folder

    target = tmp_path / "reports" / "cdnow"
    (target / "evaluation").mkdir(parents=True)
    (target / "summary.json").write_text("old\n")
    (target / "evaluation" / "metrics.json").write_text("kept\n")
    before = snapshot(tmp_path)
    rename = Path.rename

    def interrupted_rename(self, new):
        if Path(new) == target and self.name != ".cdnow.old":  # staging into place, with the old one aside
            raise KeyboardInterrupt
        return rename(self, new)

    monkeypatch.setattr(Path, "rename", interrupted_rename)
    with pytest.raises(KeyboardInterrupt), staged_folder(target, keep=("evaluation",)) as staging:
        (staging / "summary.json").write_text("new\n")
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["cdnow"]


def test_importing_clv_loads_nothing_heavy():
    # The console script must be up at once, so that a Ctrl-C while it starts meets our handler (clv.launch)
    # rather than a traceback from inside SciPy's import.
    heavy = "('scipy', 'pandas', 'duckdb', 'pymc')"
    code = f"import sys, clv, clv.launch\nprint(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_child_env())
    assert out.stdout.strip() == "[]"


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_line_loads_is_one_word(signum):
    # clv.launch's handler, while clv.cli and its imports load: the process ends with `interrupted` at once.
    code = (
        "import os, signal, time, sys\n"
        "from clv import launch\n"
        f"signal.signal({int(signum)}, launch._interrupted_while_loading)\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
        "time.sleep(30)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_child_env())
    assert done.returncode == 128 + signum and done.stderr == "interrupted\n"


def test_ctrl_c_that_a_library_turns_into_its_own_error_is_still_interrupted(run_folders, monkeypatch):
    # DuckDB answers a Ctrl-C with "Query interrupted", an extension's import with ImportError: once the handler has
    # seen the Ctrl-C, either is an interruption (exit 130), and without one an ImportError stays an error.
    import clv.cli

    config, models, _ = run_folders
    before = snapshot(models)

    def stopped(*args, **kwargs):
        clv.cli._INTERRUPT_SEEN.set()
        raise RuntimeError("Query interrupted")

    monkeypatch.setattr("clv.pipeline.fit_models", stopped)
    try:
        result = invoke("run", str(config))
    finally:
        clv.cli._INTERRUPT_SEEN.clear()
    assert result.exit_code == 130 and result.stderr.rstrip().endswith("interrupted")
    assert "✗ fit (mle) interrupted" in result.stderr
    assert "Traceback" not in result.stderr and snapshot(models) == before

    def broken(*args, **kwargs):
        raise ImportError("a real missing module")

    monkeypatch.setattr("clv.pipeline.fit_models", broken)
    result = invoke("run", str(config))
    assert result.exit_code != 130 and isinstance(result.exception, ImportError)
