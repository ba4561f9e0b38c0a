import dataclasses, re
from absl import flags
from pix2pix_tf import train, config
F = flags.FLAGS
rows = []
for f in dataclasses.fields(config.Config):
  fl = F[f.name]; d = fl.default
  d = str(d).lower() if isinstance(d, bool) else ('""' if d == "" else d)
  rows.append(f"| `--{f.name}` | `{d}` | " + fl.help.replace("|", "\\|") + " |")
s = open("README.md").read()
head = "| flag | default | meaning |\n|---|---|---|\n"
i = s.index(head) + len(head)
j = s.index("\n\n", i)
s = s[:i] + "\n".join(rows) + s[j:]
open("README.md", "w").write(s)
