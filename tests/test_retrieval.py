"""What a cycle's DELEGATING state puts in the prompt: related methods only."""

from __future__ import annotations

from batos import memory
from batos.cognition.prompts import SNIPPET_CHARS, _snippet
from batos.cognition.retrieval import ELSEWHERE, OWN, retrieve
from batos.core.refs import name_of
from batos.core.txn import reading, transact
from batos.core.uvm import UvmObject

DEPOSIT = ("deposit", "add amount to the account's balance, starting from 0, and return the new balance",
           "def deposit(self, amount):\n    if not hasattr(self, 'balance'):\n        self.balance = 0\n"
           "    self.balance += amount\n    return self.balance\n")
RUNNING_MAX = ("running_max", "Return a list where element i is the largest of numbers[0..i].",
               "def running_max(self, numbers):\n    out = []\n    for n in numbers:\n"
               "        out.append(n if not out else max(out[-1], n))\n    return out\n")


def learn(root, obj, selector, intent, source):
    """What a completed cycle leaves: the method, and its skill document in the catalog."""
    obj.define_method(selector, source)
    memory.store(root["knowledge_catalog"], memory.prepare_skill(memory.skill_doc_id(obj, selector), name_of(obj), selector, intent, source))


def objects(image):
    def create(root):
        for name in ("account", "numbers", "strings"):
            root[name] = UvmObject(parents=(root["genesis"],), name=name)

    def teach(root):  # a skill's document id is its owner's oid: committed objects only
        learn(root, root["account"], *DEPOSIT)
        learn(root, root["numbers"], *RUNNING_MAX)

    transact(image.db, create)
    transact(image.db, teach)


def test_unrelated_skills_stay_out_of_the_prompt(image):
    """Regression: a search always returns its top hits, and every bench specification's
    prompt carried methods learned for other specifications (about 550 tokens per candidate)."""
    objects(image)
    with reading(image.db) as root:
        snippets = retrieve(root, root["strings"], ["chunk", "Split items into consecutive lists of size elements each"])
    assert snippets == []


def test_the_receivers_own_sibling_method_is_shown_with_its_similarity(image):
    objects(image)
    with reading(image.db) as root:
        [snippet] = retrieve(root, root["account"], ["withdraw", "take amount out of the account's balance; refuse an overdraft"])
    assert (snippet["kind"], snippet["owner"], snippet["selector"], snippet["source"]) == ("method", "account", "deposit", DEPOSIT[2])
    assert OWN <= snippet["similarity"] < 1


def test_a_close_skill_of_another_object_comes_back(image):
    objects(image)
    with reading(image.db) as root:
        snippets = retrieve(root, root["strings"], ["running_maximum", "Return a list where element i is the largest of numbers[0..i]"])
    assert [(s["kind"], s["owner"], s["selector"]) for s in snippets] == [("skill", "numbers", "running_max")]
    assert snippets[0]["similarity"] >= ELSEWHERE


def test_no_queries_no_context(image):
    with reading(image.db) as root:
        assert retrieve(root, root["genesis"], ["", "  "]) == []


def test_a_long_snippet_is_cut_and_a_note_is_commented_out_line_by_line():
    method = _snippet({"kind": "method", "owner": "o", "selector": "f", "source": "def f(self):\n" + "    x = 1\n" * 200})
    assert method.startswith("# o.f\ndef f(self):\n") and method.endswith("\n...")
    assert len(method) <= len("# o.f\n") + SNIPPET_CHARS + len("\n...")
    note = _snippet({"kind": "memory", "owner": "Garden", "selector": "doc", "source": "Water daily.\nPrune in March."})
    assert note == "# note: Garden\n# Water daily.\n# Prune in March."
