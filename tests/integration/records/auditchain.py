"""The audit chain written out again in Python from tt/audit.h's words, for tests that must
age a store (move its entries back in time, as if written long ago) and still present a chain
and checkpoints the broker's key signed: format 2 hashes over the entries' digests, and
checkpoint lines signed with the broker's key (Python's cryptography)."""

import base64
import hashlib
import hmac
import json
import os
import sqlite3
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

VALUES_MAX = 16


def _jstr(s, i):
    """A JSON string as the broker writes it, from its opening quote: (raw text, next index)."""
    if i >= len(s) or s[i] != '"':
        return None
    j = i + 1
    while j < len(s) and s[j] != '"':
        if s[j] < " ":
            return None
        if s[j] == "\\":
            j += 1
        j += 1
    if j >= len(s):
        return None
    return s[i + 1:j], j + 1


def keys_of(detail):
    """The keys tt_audit_split hashes: actor, target, then the flat detail's (or, for a detail of
    another shape, the whole of it under the key 0x01)."""
    keys, i, ok = [], 1, detail.startswith("{")
    if ok and detail[1:2] == "}":
        i = 2
    else:
        while ok:
            k = _jstr(detail, i)
            if not k or len(keys) >= VALUES_MAX - 2 or k[1] >= len(detail) or detail[k[1]] != ":":
                ok = False
                break
            v = _jstr(detail, k[1] + 1)
            if not v:
                ok = False
                break
            keys.append(k[0])
            i = v[1]
            if detail[i:i + 1] == "}":
                i += 1
                break
            if detail[i:i + 1] != ",":
                ok = False
                break
            i += 1
    if not ok or i != len(detail):
        return ["actor", "target", "\x01"]
    return ["actor", "target"] + keys


def hash2(prev, i, ts, action, keys, digests):
    h = hashlib.sha256(b"tether-audit-2\0" + prev + struct.pack(">QQ", i, ts))
    a = action.encode()
    h.update(struct.pack(">I", len(a)) + a + struct.pack(">I", len(keys)))
    for k, d in zip(keys, digests):
        k = k.encode()
        h.update(struct.pack(">I", len(k)) + k + d)
    return h.digest()


def age(db_path, upto, delta_ms):
    """Entries 1..upto moved delta_ms back in time and the whole chain hashed again (the
    digests stay: they do not cover the time). Returns {id: hash}."""
    db = sqlite3.connect(db_path)
    db.execute("UPDATE audit_gate SET open = 1")
    rows = db.execute("SELECT id, ts_ms, action, detail FROM audit ORDER BY id").fetchall()
    prev, heads = bytes(32), {}
    for (i, ts, action, detail) in rows:
        if i <= upto:
            ts -= delta_ms
        digests = [bytes(d) for (d,) in db.execute("SELECT digest FROM audit_values WHERE entry = ? ORDER BY n", (i,))]
        keys = keys_of(detail)
        assert len(keys) == len(digests), (i, detail, keys, len(digests))
        h = hash2(prev, i, ts, action, keys, digests)
        db.execute("UPDATE audit SET ts_ms = ?, prev_hash = ?, hash = ? WHERE id = ?", (ts, prev, h, i))
        heads[i] = h
        prev = h
    db.execute("UPDATE audit_gate SET open = 0")
    db.commit()
    db.close()
    return heads


def resign(db_path, checkpoint_file, broker_cert, broker_key, heads):
    """The store's and the file's checkpoints replaced by one over the chain as it is now."""
    with open(broker_key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(broker_cert, "rb") as f:
        der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
    n = max(heads)
    msg = "tether-audit-checkpoint 1 %d %s %d" % (n, heads[n].hex(), 1000)
    sig = key.sign(msg.encode(), ec.ECDSA(hashes.SHA256()))
    line = "%s %s %s\n" % (msg, base64.b64encode(der).decode(), sig.hex())
    db = sqlite3.connect(db_path)
    db.executescript("DROP TRIGGER audit_checkpoints_no_delete; DELETE FROM audit_checkpoints;"
                     " CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints"
                     "  BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;")
    db.execute("INSERT INTO audit_checkpoints(entries, head, ts_ms, line) VALUES(?, ?, ?, ?)", (n, heads[n], 1000, line))
    db.commit()
    db.close()
    with open(checkpoint_file, "w") as f:
        f.write(line)


def verify_offline(case, entries):
    """What an auditor does: the export (entries, as `tether audit --json` gives them) checked
    by tether-certs audit-verify against the broker's checkpoint file and the CA alone."""
    export = os.path.join(case.h.dir, "audit.jsonl")
    with open(export, "w") as f:
        f.write("".join(json.dumps(e) + "\n" for e in entries))
    cps = os.path.join(case.b.data_dir, "audit.checkpoints")
    r = case.h.run("tether-certs", ["audit-verify", "--cert", case.pki.ca, "--checkpoints", cps, export])
    case.assertEqual(r.rc, 0, r)
    case.assertIn("audit log intact", r.out)


def value_digest(salt, n, value):
    """HMAC-SHA256(salt, u32be(n) || value), as tt_audit_value_digest makes it."""
    return hmac.new(salt, struct.pack(">I", n) + value.encode(), hashlib.sha256).digest()


def forge_erasure(db_path, victim, n, text):
    """What a writer to broker.db without the broker's key would do to rewrite value n of entry
    victim to text and pass it off as erased: release it (a new salt and digest2) under a
    person-erase entry appended to the chain whose commitment adds up. Returns that entry's id."""
    db = sqlite3.connect(db_path)
    db.execute("UPDATE audit_gate SET open = 1")
    last, prev, ts = db.execute("SELECT id, hash, ts_ms FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    e = last + 1
    (digest,) = db.execute("SELECT digest FROM audit_values WHERE entry = ? AND n = ?", (victim, n)).fetchone()
    salt2 = os.urandom(16)
    digest2 = value_digest(salt2, n, text)
    col = {0: "actor", 1: "target"}[n]
    db.execute("UPDATE audit SET %s = ? WHERE id = ?" % col, (text, victim))
    db.execute("UPDATE audit_values SET salt = ?, digest2 = ?, erased = ? WHERE entry = ? AND n = ?",
               (salt2, digest2, e, victim, n))
    acc = hashlib.sha256(bytes(32) + struct.pack(">QI", victim, n) + bytes(digest) + digest2).digest()
    detail = '{"reason":"r","records":"1","held":"0","released":"1","values":"%s"}' % acc.hex()
    values = ["boss", "erased-ffffffffffff", "r", "1", "0", "1", acc.hex()]
    salts = [os.urandom(16) for _ in values]
    digests = [value_digest(sl, i, v) for i, (sl, v) in enumerate(zip(salts, values))]
    h = hash2(bytes(prev), e, ts + 1, "person-erase", keys_of(detail), digests)
    db.execute("INSERT INTO audit(id, ts_ms, actor, action, target, detail, prev_hash, hash, format)"
               " VALUES(?, ?, ?, ?, ?, ?, ?, ?, 2)", (e, ts + 1, "boss", "person-erase", "erased-ffffffffffff", detail,
                                                      bytes(prev), h))
    for i, (sl, d) in enumerate(zip(salts, digests)):
        db.execute("INSERT INTO audit_values(entry, n, salt, digest, erased) VALUES(?, ?, ?, ?, 0)", (e, i, sl, d))
    db.execute("UPDATE audit_gate SET open = 0")
    db.commit()
    db.close()
    return e
