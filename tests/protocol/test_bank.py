"""ZCQ/1 section 8: the reference bank domain, its rules and views."""

import pytest

from conftest import assert_error, assert_ok, check_type, uniq

ROW_TYPES = {"key": str, "owner": str, "balance": int, "status": str,
             "version": int}


def events_of(client, k):
    return [(e["type"], e["data"])
            for e in client.stream("account/" + k)["events"]]


def row(client, k):
    return client.synced_row("accounts", k)


def check_account_row(r, k, owner, balance, status, version):
    assert isinstance(r, dict), r
    for f, t in ROW_TYPES.items():
        assert f in r and check_type(r[f], t), (f, r)
    assert {f: r[f] for f in ROW_TYPES} == {
        "key": k, "owner": owner, "balance": balance, "status": status,
        "version": version}


# ------------------------------------------------------------ open

def test_open(client):
    k = uniq()
    rep = assert_ok(client.open(k, owner="ann"))
    assert rep["version"] == 1 and rep["events"] == 1
    assert events_of(client, k) == [("opened", {"owner": "ann",
                                                "overdraft": 0})]
    check_account_row(row(client, k), k, "ann", 0, "open", 1)


def test_open_with_overdraft(client):
    k = uniq()
    assert_ok(client.open(k, owner="bob", overdraft=500))
    assert events_of(client, k) == [("opened", {"owner": "bob",
                                                "overdraft": 500})]


def test_open_twice_rejected(client):
    k = uniq()
    assert_ok(client.open(k))
    rep = assert_error(client.open(k, owner="eve"), "rejected")
    assert rep["message"]
    assert client.stream("account/" + k)["version"] == 1
    assert row(client, k)["owner"] == "ann"


def test_owner_bounds(client):
    for owner in ("a", "o" * 128, "\u00e9" * 64):      # 1, 128, 128 bytes
        k = uniq()
        assert_ok(client.open(k, owner=owner))
        assert row(client, k)["owner"] == owner


OPEN_INVALID = {
    "no-data": None,
    "data-list": ["ann"],
    "data-string": "ann",
    "owner-missing": {},
    "owner-missing-with-overdraft": {"overdraft": 5},
    "owner-empty": {"owner": ""},
    "owner-129": {"owner": "o" * 129},
    "owner-129-bytes-utf8": {"owner": "\u00e9" * 64 + "x"},
    "owner-int": {"owner": 7},
    "owner-nil": {"owner": None},
    "owner-list": {"owner": ["ann"]},
    "overdraft-negative": {"owner": "ann", "overdraft": -1},
    "overdraft-string": {"owner": "ann", "overdraft": "5"},
    "overdraft-float": {"owner": "ann", "overdraft": 5.0},
    "overdraft-bool": {"owner": "ann", "overdraft": True},
}


@pytest.mark.parametrize("case", sorted(OPEN_INVALID))
def test_open_invalid(client, case):
    k = uniq()
    rep = client.send("account", k, "open", OPEN_INVALID[case])
    assert_error(rep, "invalid")
    assert client.stream("account/" + k)["version"] == 0
    assert row(client, k) is None


# ------------------------------------------------------------ deposit

def test_deposit(client):
    k = uniq()
    assert_ok(client.open(k))
    assert_ok(client.deposit(k, 1))
    assert assert_ok(client.deposit(k, 2499))["version"] == 3
    assert events_of(client, k)[1:] == [("deposited", {"amount": 1}),
                                        ("deposited", {"amount": 2499})]
    check_account_row(row(client, k), k, "ann", 2500, "open", 3)


def test_deposit_needs_open_account(client):
    k = uniq()
    assert_error(client.deposit(k, 10), "rejected")
    assert client.stream("account/" + k)["version"] == 0
    assert_ok(client.open(k))
    assert_ok(client.close_account(k))
    assert_error(client.deposit(k, 10), "rejected")
    assert client.stream("account/" + k)["version"] == 2


AMOUNT_INVALID = {
    "no-data": None,
    "data-list": [5],
    "amount-missing": {},
    "amount-zero": {"amount": 0},
    "amount-negative": {"amount": -5},
    "amount-string": {"amount": "5"},
    "amount-float": {"amount": 5.5},
    "amount-bool": {"amount": True},
    "amount-nil": {"amount": None},
}


@pytest.mark.parametrize("cmd", ["deposit", "withdraw"])
@pytest.mark.parametrize("case", sorted(AMOUNT_INVALID))
def test_amount_invalid(client, cmd, case):
    k = uniq()
    assert_ok(client.open(k, overdraft=1000))
    assert_ok(client.deposit(k, 100))
    rep = client.send("account", k, cmd, AMOUNT_INVALID[case])
    assert_error(rep, "invalid")
    assert client.stream("account/" + k)["version"] == 2
    assert row(client, k)["balance"] == 100


# ------------------------------------------------------------ withdraw

def test_withdraw(client):
    k = uniq()
    assert_ok(client.open(k))
    assert_ok(client.deposit(k, 100))
    assert_ok(client.withdraw(k, 30))
    assert events_of(client, k)[2] == ("withdrawn", {"amount": 30})
    check_account_row(row(client, k), k, "ann", 70, "open", 3)


def test_deposit_and_withdraw_reply_balance(client):
    """Extension: deposit and withdraw replies carry the balance after the
    command; a duplicate is answered with the same balance."""
    k = uniq()
    assert "balance" not in assert_ok(client.open(k, overdraft=50))
    assert assert_ok(client.deposit(k, 100))["balance"] == 100
    rep = assert_ok(client.withdraw(k, 130, id="wd-" + k))
    assert rep["balance"] == -30 and rep["duplicate"] is False
    assert assert_ok(client.deposit(k, 5))["balance"] == -25
    again = assert_ok(client.withdraw(k, 130, id="wd-" + k))
    assert again["duplicate"] is True and again["balance"] == -30
    assert again["version"] == rep["version"]


def test_withdraw_to_zero_and_not_below(client):
    k = uniq()
    assert_ok(client.open(k))
    assert_ok(client.deposit(k, 100))
    rep = assert_error(client.withdraw(k, 101), "rejected")
    assert rep["message"]
    assert_ok(client.withdraw(k, 100))
    assert_error(client.withdraw(k, 1), "rejected")
    check_account_row(row(client, k), k, "ann", 0, "open", 3)


def test_withdraw_into_overdraft(client):
    k = uniq()
    assert_ok(client.open(k, owner="ovd", overdraft=50))
    assert_ok(client.deposit(k, 20))
    assert_error(client.withdraw(k, 71), "rejected")    # 20-71 = -51
    assert_ok(client.withdraw(k, 70))                    # exactly -50
    assert_error(client.withdraw(k, 1), "rejected")
    check_account_row(row(client, k), k, "ovd", -50, "open", 3)
    assert_ok(client.deposit(k, 50))
    assert row(client, k)["balance"] == 0


def test_withdraw_needs_open_account(client):
    k = uniq()
    assert_error(client.withdraw(k, 1), "rejected")
    assert_ok(client.open(k, overdraft=100))
    assert_ok(client.close_account(k))
    assert_error(client.withdraw(k, 1), "rejected")


# ------------------------------------------------------------ close

def test_close(client):
    k = uniq()
    assert_ok(client.open(k))
    assert_ok(client.deposit(k, 5))
    assert_ok(client.withdraw(k, 5))
    assert_ok(client.close_account(k))
    assert events_of(client, k)[-1] == ("closed", {})
    check_account_row(row(client, k), k, "ann", 0, "closed", 4)


def test_close_rules(client):
    k = uniq()
    assert_error(client.close_account(k), "rejected")       # never opened
    assert_ok(client.open(k, overdraft=10))
    assert_ok(client.deposit(k, 1))
    assert_error(client.close_account(k), "rejected")       # balance 1
    assert_ok(client.withdraw(k, 6))
    assert_error(client.close_account(k), "rejected")       # balance -5
    assert_ok(client.deposit(k, 5))
    assert_ok(client.close_account(k))
    assert_error(client.close_account(k), "rejected")       # closed
    assert_error(client.open(k), "rejected")                # already opened
    assert client.stream("account/" + k)["version"] == 5
    assert row(client, k)["status"] == "closed"


def test_unknown_command_type(client):
    k = uniq()
    assert_ok(client.open(k))
    assert_error(client.send("account", k, "transfer", {"amount": 1}),
                 "unknown")


# ------------------------------------------------------------ views

def test_accounts_index_owner(client):
    owner = uniq("own")
    keys = sorted(uniq() for _ in range(4))
    for k in keys:
        assert_ok(client.open(k, owner=owner))
    assert_ok(client.open(uniq(), owner=owner + "x"))
    pos = client.head()
    rep = assert_ok(client.query("list", view="accounts", index="owner",
                                 value=owner, min_position=pos))
    assert [r["key"] for r in rep["rows"]] == keys
    assert all(r["owner"] == owner for r in rep["rows"])
    rep = assert_ok(client.query("count", view="accounts", index="owner",
                                 value=owner))
    assert rep["count"] == 4


def test_accounts_row_follows_stream(client):
    k = uniq()
    assert_ok(client.open(k, owner="zed", overdraft=5))
    steps = [("deposit", 10), ("withdraw", 15), ("deposit", 5)]
    for i, (cmd, amount) in enumerate(steps, 2):
        rep = assert_ok(getattr(client, cmd)(k, amount))
        r = client.row("accounts", k, min_position=rep["position"])
        assert r["version"] == i == rep["version"]
    check_account_row(row(client, k), k, "zed", 0, "open", 4)
    # a rejected command changes nothing
    assert_error(client.withdraw(k, 6), "rejected")
    check_account_row(row(client, k), k, "zed", 0, "open", 4)


def test_totals(daemon):
    c = daemon.client()
    try:
        t = c.synced_row("totals", "bank")
        assert t is None or t == {"key": "bank", "accounts": 0,
                                  "balance": 0, "events": 0}
        assert_ok(c.open("a", overdraft=100))
        assert_ok(c.open("b"))
        assert_ok(c.open("c"))
        assert_ok(c.deposit("a", 40))
        assert_ok(c.withdraw("a", 90))         # a = -50
        assert_ok(c.deposit("b", 300))
        assert_ok(c.withdraw("b", 20))         # b = 280
        assert_ok(c.close_account("c"))
        assert_error(c.withdraw("b", 1000), "rejected")
        assert_error(c.deposit("b", 0), "invalid")
        t = c.synced_row("totals", "bank")
        for f, typ in (("key", str), ("accounts", int), ("balance", int),
                       ("events", int)):
            assert check_type(t[f], typ), (f, t)
        assert t["key"] == "bank"
        assert t["accounts"] == 2
        assert t["balance"] == 230
        assert t["events"] == 8
        # totals is one row
        rep = assert_ok(c.query("list", view="totals"))
        assert [r["key"] for r in rep["rows"]] == ["bank"]
        # closing the last open ones
        assert_ok(c.deposit("a", 50))
        assert_ok(c.close_account("a"))
        t = c.synced_row("totals", "bank")
        assert (t["accounts"], t["balance"], t["events"]) == (1, 280, 10)
        # accounts view: one row per opened account, closed ones included
        rows = assert_ok(c.query("list", view="accounts",
                                 min_position=c.head()))["rows"]
        assert [(r["key"], r["status"], r["balance"]) for r in rows] == [
            ("a", "closed", 0), ("b", "open", 280), ("c", "closed", 0)]
    finally:
        c.close()
