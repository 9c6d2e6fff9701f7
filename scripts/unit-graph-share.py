#!/usr/bin/env python3
"""Compare two cargo unit graphs (--unit-graph JSON): how many units of the second the first
already builds. A unit is shared when package, target, mode, features, profile and all its
dependencies' units are equal. Usage: unit-graph-share.py FIRST.json SECOND.json"""
import json,sys,hashlib
def load(p):
    u=json.load(open(p))['units']; memo={}
    def key(i):
        if i in memo: return memo[i]
        x=u[i]
        base=json.dumps([x['pkg_id'],x['target']['name'],x['target']['kind'],x['mode'],sorted(x['features']),x['profile'],x.get('platform')],sort_keys=True)
        k=hashlib.sha1((base+'|'+','.join(sorted(key(d['index']) for d in x['dependencies']))).encode()).hexdigest()
        memo[i]=k; return k
    sys.setrecursionlimit(10000)
    return {key(i):u[i] for i in range(len(u))}
a=load(sys.argv[1]); b=load(sys.argv[2])
new=[v for k,v in b.items() if k not in a]
print(len(b),'units,',len(new),'not in first')
print(' '.join(sorted(set(v['pkg_id'].split('#')[-1] for v in new))))
