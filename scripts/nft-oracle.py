#!/usr/bin/env python3
"""Differential check of nft-offload against the system's nft, in a scratch network namespace.

Each rule is loaded by the real nft (into the kernel, in namespace NS) and by nft-offload; the
tool reports where one accepts and the other refuses, or where the `nft -s -p list ruleset`
listings differ. The system nft may be older than the 1.1.x nft-offload follows, so a
difference is a lead to check in the nftables sources, not a verdict.

Usage (root, nft installed):
    scripts/nft-oracle.py BIN rules RULES_FILE [FAMILY ...]   one rule a line, tried in each family
    scripts/nft-oracle.py BIN mutate CORPUS_DIR [COUNT]        py-corpus rules with values changed

Without root or nft it says so and exits 0, so it can sit in any workflow.
"""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

NS = os.environ.get('NFT_ORACLE_NS', 'nftoracle-dev')
FAMILIES = ['ip', 'ip6', 'inet', 'bridge', 'netdev', 'arp']
CHAIN = {'netdev': 'type filter hook ingress device lo priority 0'}


def usable():
    if shutil.which('nft') is None or shutil.which('ip') is None:
        return 'nft or ip not installed'
    if os.geteuid() != 0:
        return 'needs root (network namespace)'
    return None


def ensure_ns():
    names = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout.split()
    if NS not in names:
        subprocess.run(['ip', 'netns', 'add', NS], check=True)


def first_error(stderr):
    lines = stderr.splitlines()
    return 'ERR ' + (lines[0].split('Error: ')[-1] if lines else '')


def with_file(text, fn):
    with tempfile.NamedTemporaryFile('w', suffix='.nft', delete=False) as f:
        f.write(text)
        path = f.name
    try:
        return fn(path)
    finally:
        os.unlink(path)


def kernel(text):
    def go(path):
        r = subprocess.run(['ip', 'netns', 'exec', NS, 'nft', '-f', path], capture_output=True, text=True)
        if r.returncode:
            return first_error(r.stderr)
        return subprocess.run(['ip', 'netns', 'exec', NS, 'nft', '-s', '-p', 'list', 'ruleset'], capture_output=True, text=True).stdout
    return with_file('flush ruleset\n' + text, go)


def ours(binary, text):
    def go(path):
        r = subprocess.run([binary, 'print', '-s', '-p', path], capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else first_error(r.stderr)
    return with_file(text, go)


def body(listing, chain):
    if listing.startswith('ERR'):
        return listing
    out, inside = [], False
    for line in listing.splitlines():
        s = line.strip()
        if s.startswith(f'chain {chain} '):
            inside = True
            continue
        if inside:
            if s == '}':
                break
            if s and not (s.startswith('type ') and 'hook' in s):
                out.append(s)
    return ' '.join(out)


def compare(binary, text, chain, label):
    k, o = body(kernel(text), chain), body(ours(binary, text), chain)
    if k == o or (k.startswith('ERR') and o.startswith('ERR')):
        return 'same'
    kind = 'kernel refuses' if k.startswith('ERR') else 'ours refuses' if o.startswith('ERR') else 'differ'
    print(f'[{kind}] {label}\n   nft:  {k[:300]}\n   ours: {o[:300]}', flush=True)
    return kind


def rules_mode(binary, path, families):
    stats = {}
    for rule in (l.strip() for l in open(path)):
        if not rule or rule.startswith('#'):
            continue
        for fam in families or FAMILIES:
            cfg = CHAIN.get(fam, 'type filter hook input priority 0')
            text = f'table {fam} t {{\n chain c {{\n  {cfg}\n  {rule}\n }}\n}}\n'
            kind = compare(binary, text, 'c', f'{fam}: {rule}')
            stats[kind] = stats.get(kind, 0) + 1
    print(stats)


def mutations(rule):
    out = []
    for m in re.finditer(r'(?<![\w.:-])(\d+)(?![\w.:])', rule):
        v = int(m.group(1))
        out += [rule[:m.start()] + str(n) + rule[m.end():] for n in (v + 1, 0, 256, 65535)]
    if ' != ' in rule:
        out.append(rule.replace(' != ', ' ', 1))
    return out


def mutate_mode(binary, corpus, count):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'conformance'))
    import nft_conformance as harness
    jobs = []
    for case in harness.py_cases(corpus):
        if case[6] == 'ok':
            jobs += [(case, r) for r in mutations(case[5])]
    random.seed(1)
    random.shuffle(jobs)
    stats = {}
    for case, rule in jobs[:count]:
        path, fam, tname, chains, pre, _, _, _, lineno = case
        table = f'{fam} {tname}'
        cmds = [f'add table {table}'] + [f'add chain {table} {c}' + (f' {{ {cfg}; }}' if cfg else '') for c, cfg in chains]
        cmds += [c.replace('@TABLE@', table) for _, c in pre] + [f'add rule {table} {chains[0][0]} {rule}']
        kind = compare(binary, '\n'.join(cmds) + '\n', chains[0][0], f'{os.path.basename(path)}:{lineno} {fam}: {rule}')
        stats[kind] = stats.get(kind, 0) + 1
    print(stats)


def main():
    if len(sys.argv) < 4 or sys.argv[2] not in ('rules', 'mutate'):
        print(__doc__)
        return 2
    why = usable()
    if why:
        print(f'nft-oracle: skipped: {why}')
        return 0
    ensure_ns()
    binary, mode, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == 'rules':
        rules_mode(binary, arg, sys.argv[4:])
    else:
        mutate_mode(binary, arg, int(sys.argv[4]) if len(sys.argv) > 4 else 2000)
    return 0


if __name__ == '__main__':
    sys.exit(main())
