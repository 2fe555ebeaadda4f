"""RPO base-to-novel: K=24 read-only prompt pairs, ST initialisation.

    python -m jaxprompt.main --config configs/rpo_b2n.py:dataset=dtd,root=/data,shots=16,seed=1 --workdir runs/rpo_b2n/dtd_1

Reference setting: 16 shots, K=24, SGD lr 0.01, batch 4, 15 epochs, seeds 1, 2, 3 (30,720 parameters).
Options: `k`, `init` (st | random), `fast` (read-only cached path, exact; False = the reference's masked path).
Published (mean of 3 seeds, base / novel / HM; the average HM is the mean of per-dataset HMs):
average 81.13 / 75.00 / 77.78; ImageNet 76.60 / 71.57 / 74.00; Caltech101 97.97 / 94.37 / 96.03;
OxfordPets 94.63 / 97.50 / 96.05; StanfordCars 73.87 / 75.53 / 74.69; Flowers102 94.13 / 76.67 / 84.50;
Food101 90.33 / 90.83 / 90.58; FGVCAircraft 37.33 / 34.20 / 35.70; SUN397 80.60 / 77.80 / 79.18;
DTD 76.70 / 62.13 / 68.61; EuroSAT 86.63 / 68.97 / 76.79; UCF101 83.67 / 75.43 / 79.34.
"""

from jaxprompt.config import finish, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="rpo", protocol="base2novel", lr=0.01, epochs=15, batch_size=4,
                              extra_args={"k": 24, "init": "st", "fast": True})
  for key in ("k", "init", "fast"):
    config.method.rpo[key] = args[key]
  return finish(config, args)
