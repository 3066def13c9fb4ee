#!/usr/bin/env python3
"""Top allocation sites of a dhat heap profile (dhat-heap.json) at the heap's peak (t-gmax):
bytes live at the peak (and at the end), grouped by the first frame of the agent's own code."""
import json
import sys
from collections import defaultdict

path = sys.argv[1] if len(sys.argv) > 1 else "dhat-heap.json"
top = int(sys.argv[2]) if len(sys.argv) > 2 else 12
d = json.load(open(path))
ftbl = d["ftbl"]
by_site = defaultdict(lambda: [0, 0, 0])
for pp in d["pps"]:
    frames = [ftbl[i] for i in pp["fs"]]
    ours = next((f for f in frames if "smtp_oauth_exporter" in f), frames[-1] if frames else "?")
    # "0x…: function (file:line:col)": keep the function and the place.
    site = ours.split(": ", 1)[-1]
    by_site[site][0] += pp.get("gb", 0)
    by_site[site][1] += pp.get("gbk", 0)
    by_site[site][2] += pp.get("eb", 0)
total = sum(v[0] for v in by_site.values())
end = sum(v[2] for v in by_site.values())
print(f"live at the peak: {total / 2**20:.1f} MiB; at the end: {end / 2**20:.1f} MiB")
for site, (b, n, e) in sorted(by_site.items(), key=lambda kv: -kv[1][0])[:top]:
    print(f"{b / 2**20:8.1f} MiB {n:9d} blocks {e / 2**20:8.1f} MiB at the end  {site[:160]}")
