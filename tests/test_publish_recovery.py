"""A publish cut at the swap (its worker killed right after CURRENT changed): the job's status says what is
served, and every worker converges, polling off too (issue 19, item 5)."""
import json

from retriever.store import current_version

TOKEN = "publish-token"


def _admin(url, method, path, body=None):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


TINY_CORPUS = """entries:
  - id: pw
    question: 忘记密码怎么办
    paraphrases: [密码找回, 忘記密碼, 密码忘了怎么登录]
    answer: 点击登录页的找回密码。
  - id: tax
    question: 个人所得税怎么申报
    paraphrases: [个税申报, 怎么报个税, 个税在哪里申报]
    answer: 在个税APP申报。
  - id: phone
    question: 手机号怎么更换
    paraphrases: [换绑手机, 更改手机号码, 手机号换了怎么办]
    answer: 在账户设置里更换手机号。
"""


def test_a_publish_killed_right_after_current_changes_is_done_and_every_worker_serves_it(tmp_path, encoder):
    """kill -9 of the publishing worker just after CURRENT changes, polling off, two workers: the status
    says the version is live (not 'failed, publish again'), and both workers end up serving it."""
    import os
    import signal
    import time
    import urllib.request

    from conftest import running_server

    from retriever.pipeline import build_from_corpus

    corpus, root = tmp_path / "corpus", tmp_path / "index"
    corpus.mkdir()
    (corpus / "faq.yaml").write_text(TINY_CORPUS, encoding="utf-8")  # small: the publish builds in seconds
    build_from_corpus(corpus, root, encoder, progress=False)
    before = current_version(root)
    env = {"RETRIEVER_ADMIN_TOKEN": TOKEN, "RETRIEVER_CORPUS": str(corpus), "RETRIEVER_RELOAD_POLL_SECONDS": "0",
           "RETRIEVER_RATE_LIMIT": ""}
    with running_server(root, env, workers=2) as (url, _):
        status, job = _admin(url, "POST", "/admin/api/publish", {})
        assert status == 202 and job["state"] == "running" and job["served_before"] == before, job
        deadline = time.monotonic() + 240
        while current_version(root) == before:
            assert time.monotonic() < deadline, "the publish never changed CURRENT"
            time.sleep(0.002)
        os.kill(job["pid"], signal.SIGKILL)  # the worker running the publish, right after the swap
        published = current_version(root)
        on_disk = json.loads((corpus / ".workbench" / "publish.json").read_text())
        assert on_disk["state"] == "running", "the publish finished before it could be killed"

        deadline, job = time.monotonic() + 60, {}
        while time.monotonic() < deadline and not (job.get("state") == "done" and job.get("all_workers")):
            time.sleep(0.5)
            status, job = _admin(url, "GET", "/admin/api/publish")
        assert job["state"] == "done" and job["interrupted"] is True and job["version"] == published, job
        assert job["current"] == published and job["all_workers"] is True and len(job["workers"]) == 2, job
        assert "重新发布" not in job["message"] or "无需" in job["message"]
        served = set()
        for _ in range(20):  # new connections: any worker may answer
            with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
                served.add(json.loads(response.read())["index"]["version"])
        assert served == {published}
