import os,re,sys
for crate in ['protocol','core','listen','relay','connector','api','gateway','devsim','ponte','bench','tests']:
    src=f'{crate}/src'
    mods={}
    for root,ds,fs in os.walk(src):
        for f in fs:
            if not f.endswith('.rs'): continue
            rel=os.path.relpath(os.path.join(root,f),src)
            top=rel.split('/')[0].removesuffix('.rs')
            if top in ('lib','main'): continue
            mods.setdefault(top,[]).append(os.path.join(root,f))
    edges={m:set() for m in mods}
    for m,fs in mods.items():
        for f in fs:
            t=open(f).read()
            t=t.split('#[cfg(test)]\nmod tests')[0]
            t='\n'.join(l for l in t.split('\n') if not l.lstrip().startswith('//'))
            for n in re.findall(r'crate::([a-z_]+)',t):
                if n in mods and n!=m: edges[m].add(n)
            # use crate::{a, b}
            for grp in re.findall(r'crate::\{([^}]*)\}',t):
                for n in re.findall(r'\b([a-z_]+)\b',grp):
                    if n in mods and n!=m: edges[m].add(n)
    # find cycles (pairs and longer) via DFS
    seen=set()
    def dfs(start,node,path):
        for n in edges[node]:
            if n==start: 
                c=tuple(sorted(path)); 
                if c not in seen: seen.add(c); print(crate, ' -> '.join(path+[start]))
            elif n not in path and len(path)<6: dfs(start,n,path+[n])
    for m in mods: dfs(m,m,[m])
