"""Decision parameters that are not numbers (NaN, infinity) in judge.json or the manifest are refused at load and
reload, like NaN vectors; the manifest's decision fields carry a checksum (issue 19, item 2)."""
import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

from retriever.config import ServiceConfig
from retriever.errors import IndexLoadError
from retriever.files import sha256_file
from retriever.http import create_app
from retriever.reload import ReloadRefused, SearcherHolder
from retriever.search import Searcher
from retriever.store import VERSIONS, current_version, load_index
from retriever.store.layout import DECISION_CHECKSUM, decision_checksum

NAN = float("nan")


def _copy_index(seed_index, tmp_path):
    root = tmp_path / "index"
    shutil.copytree(seed_index, root)
    return root, root / VERSIONS / current_version(root)


def _edit_judge(version_dir, change):
    """Change judge.json and recompute its file checksum: only the numbers lie."""
    path = version_dir / "judge.json"
    judge = json.loads(path.read_text())
    change(judge)
    path.write_text(json.dumps(judge))  # Python writes NaN and Infinity as bare words, as the probe did
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["files"]["judge.json"] = sha256_file(path)
    (version_dir / "manifest.json").write_text(json.dumps(manifest))


def _edit_manifest(version_dir, change, checksum="recompute"):
    """Change the manifest; ``checksum``: "recompute" the decision checksum, "keep" the old one, "drop" it."""
    path = version_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    if checksum == "recompute":
        manifest[DECISION_CHECKSUM] = decision_checksum(manifest)
    elif checksum == "drop":
        manifest.pop(DECISION_CHECKSUM, None)
    path.write_text(json.dumps(manifest))


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(record):
        for key in keys[:-1]:
            record = record[key]
        record[keys[-1]] = value
    return change


JUDGE_EDITS = [
    (_set("threshold", NAN), r"judge values are not finite.*threshold"),
    (_set("bias", float("inf")), r"judge values are not finite.*bias"),
    (lambda judge: judge["curve"]["y"].__setitem__(0, NAN), r"judge values are not finite.*curve"),
    (lambda judge: judge["weights"].__setitem__(3, float("-inf")), r"judge values are not finite.*weights"),
]


@pytest.mark.parametrize("change, message", JUDGE_EDITS)
def test_a_judge_with_nan_is_refused_at_load(seed_index, tmp_path, change, message):
    root, version_dir = _copy_index(seed_index, tmp_path)
    _edit_judge(version_dir, change)
    with pytest.raises(IndexLoadError, match=r"cannot use judge.json \(" + message + r".*rebuild the index"):
        load_index(root)


MANIFEST_EDITS = [
    (_set("calibration", "hybrid", "threshold", NAN), "calibration.hybrid.threshold"),
    (_set("calibration", "dense", "ambiguity_margin", float("inf")), "calibration.dense.ambiguity_margin"),
    (_set("judge", "threshold", NAN), "judge.threshold"),
]


@pytest.mark.parametrize("checksum", ["recompute", "drop"])
@pytest.mark.parametrize("change, field", MANIFEST_EDITS)
def test_nan_in_the_manifests_decision_parameters_is_refused(seed_index, tmp_path, change, field, checksum):
    """With the checksum recomputed (a deliberate edit) or absent (an index from before it), NaN is refused."""
    root, version_dir = _copy_index(seed_index, tmp_path)
    _edit_manifest(version_dir, change, checksum)
    with pytest.raises(IndexLoadError, match=f"manifest field {field} is not a finite number.*rebuild the index"):
        load_index(root)


def test_the_manifests_decision_parameters_carry_a_checksum(seed_index, tmp_path):
    root, version_dir = _copy_index(seed_index, tmp_path)
    manifest = load_index(root).manifest
    assert manifest[DECISION_CHECKSUM] == decision_checksum(manifest)
    _edit_manifest(version_dir, _set("calibration", "hybrid", "threshold", 0.01), checksum="keep")
    with pytest.raises(IndexLoadError, match=r"decision parameters \(calibration, .*judge, fast_path\) do not "
                                             r"match their checksum"):
        load_index(root)
    _edit_manifest(version_dir, lambda manifest: None, checksum="drop")  # an index built before the checksum
    assert load_index(root).manifest["calibration"]["hybrid"]["threshold"] == 0.01


def test_a_nan_judge_is_refused_by_reload_and_readyz_is_not_ready_without_a_good_version(
        seed_index, tmp_path, encoder):
    root, version_dir = _copy_index(seed_index, tmp_path)
    holder = SearcherHolder(root, lambda folder: Searcher.load(folder, encoder))
    holder.load_initial()
    served = holder.current.version
    bad = root / VERSIONS / "20990101T000000.000000Z-nanjudge"
    shutil.copytree(version_dir, bad)
    _edit_judge(bad, _set("threshold", NAN))
    (root / "CURRENT").write_text(bad.name + "\n")
    with pytest.raises(ReloadRefused, match=f"still serving {served}.*not finite"):
        holder.reload()
    assert holder.current.version == served
    assert holder.current.search("注销进度怎么查", 1).decision in {"answer", "ambiguous", "no_match"}

    only_bad = tmp_path / "only-bad"
    (only_bad / VERSIONS).mkdir(parents=True)
    shutil.copytree(bad, only_bad / VERSIONS / bad.name)
    (only_bad / "CURRENT").write_text(bad.name + "\n")
    nothing = SearcherHolder(only_bad, lambda folder: Searcher.load(folder, encoder))
    with pytest.raises(IndexLoadError):
        nothing.load_initial(quiet=True)
    client = create_app(nothing, ServiceConfig(rate_limit=None)).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["error"] == "not_ready"
    assert client.get("/v1/search?q=注销").status_code == 503


def test_the_cli_says_error_for_a_nan_calibration(seed_index, tmp_path):
    root, version_dir = _copy_index(seed_index, tmp_path)
    _edit_manifest(version_dir, _set("calibration", "hybrid", "threshold", NAN))
    run = subprocess.run([sys.executable, "-m", "retriever", "search", "--index", str(root), "注销进度怎么查"],
                         check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: ") and "calibration.hybrid.threshold" in run.stderr
    assert "Traceback" not in run.stderr and run.stdout.strip() != "NaN"
