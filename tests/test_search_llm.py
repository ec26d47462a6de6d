"""The LLM proposer against a loopback OpenAI-compatible server of the test's own."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from algoperf.search import check, seeds
from algoperf.search.proposers import LLMProposer, MixedProposer, MutationProposer, llm_prompt

GOOD = """Here is a better one:
```python
def rule(g, p, step, lr, m):
    c = interpolate(m, g, 0.8)
    d = jnp.sign(c)
    m = interpolate(m, g, 0.99)
    s = lr * d
    update = -s
    return update, (m,)


schedule = warmup_cosine(lr=0.0003, warmup=0.05)
```"""
DEAD_CODE = "```python\ndef rule(g, p, step, lr):\n    x = p * 2.0\n    update = g * -0.01\n    return update, ()\n```"
NOT_A_PROGRAM = "I would use Adam with a larger learning rate."


@pytest.fixture
def server():
    answers = [GOOD, DEAD_CODE, NOT_A_PROGRAM]
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            answer = answers[(len(requests) - 1) % len(answers)]
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def _population():
    out = []
    for name, score in (("adamw", 0.9), ("sgd_momentum", 0.2), ("lion", 0.5)):
        program = seeds.seed_program(name)
        out.append({"hash": check.canonical_hash(program), "program": program.to_json(),
                    "fitness": {"score": score, "speedup": 1.0}})
    return out


def test_answers_are_parsed_and_pass_the_same_check(server):
    url, requests = server
    proposals = LLMProposer(url, key="k-123", model="m").propose(_population(), 3, random.Random(0))
    assert [r["path"] for r in requests] == ["/v1/chat/completions"] * 3
    assert requests[0]["auth"] == "Bearer k-123" and requests[0]["body"]["model"] == "m"
    good, dead, bad = proposals
    assert good.program is not None and check.check(good.program) == []
    assert good.parent == _population()[0]["hash"]  # the best member
    assert dead.program is not None and any("dead code" in p for p in check.check(dead.program))
    assert bad.program is None and "not a program" in bad.error


def test_prompt_lists_the_population_worst_to_best(server):
    url, requests = server
    LLMProposer(url).propose(_population(), 1, random.Random(0))
    prompt = requests[0]["body"]["messages"][-1]["content"]
    assert prompt == llm_prompt(_population())
    assert prompt.index("score=0.2") < prompt.index("score=0.5") < prompt.index("score=0.9")
    assert requests[0]["auth"] is None


def test_unreachable_endpoint_is_a_rejected_proposal_not_a_crash(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    dead_url = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}"
    (proposal,) = LLMProposer(dead_url, timeout_s=2).propose(_population(), 1, random.Random(0))
    assert proposal.program is None and "failed" in proposal.error


def test_mixed_proposer_uses_both(server):
    url, requests = server
    mixed = MixedProposer(LLMProposer(url), MutationProposer(), 0.5)
    proposals = mixed.propose(_population(), 10, random.Random(3))
    origins = {p.origin.split(":")[0] for p in proposals}
    assert origins == {"llm", "mutation"} and len(requests) == sum(p.origin == "llm" for p in proposals)
