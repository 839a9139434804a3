"""Train, evaluate and measure every method of the comparison on one harness.

Each method runs in ``<output>/<method>``: training is ``python -m segzoo.train_net --resume`` in a
subprocess (:func:`segzoo.engine.launch.run_train_net`; Detectron2 logs progress and ETA; an
interrupted run continues from its last checkpoint), evaluation is Detectron2's end-of-training
EvalHook, and the measurements of the trained model are cached in ``zoo_measure.json``. A finished
method is reused as it is; a folder trained with other settings is refused rather than mixed into
the table.
"""
import json
import os
import sys
import time
from typing import Dict, List

import torch

from ..benchmark import build_model_from, write_json
from ..engine.launch import run_command, run_train_net
from ..engine.results import last_eval_metrics, median_iteration_time
from ..errors import UserError
from .measure import count_parameters, inference_stats, run_isolated
from .methods import Harness, Method, harness_opts, method_order
from .methods import methods as declared_methods

__all__ = ["Zoo", "measure_trained", "test_inputs"]


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def test_inputs(cfg, dataset: str, n: int) -> List[dict]:
    """The first ``n`` images of ``dataset`` as model inputs on the config's device."""
    from detectron2.data import DatasetCatalog

    from ..data import CheckedDatasetMapper

    mapper = CheckedDatasetMapper(cfg, False)
    inputs = [mapper(d) for d in DatasetCatalog.get(dataset)[:n]]
    for x in inputs:
        x["image"] = x["image"].to(cfg.MODEL.DEVICE)
    if not inputs:
        raise UserError(f"dataset {dataset} has no images to time")
    return inputs


def measure_trained(config_file, opts, weights, dataset, n, threads) -> Dict:
    """Parameters, inference peak memory and median latency of a trained model on the first
    ``n`` images of ``dataset`` (meant to run in a fresh process: :func:`run_isolated`)."""
    torch.set_num_threads(threads)
    model, cfg = build_model_from(config_file, opts, weights)  # registers the config's datasets
    inputs = test_inputs(cfg, dataset, n)
    return {"parameters": count_parameters(model), **inference_stats(model, inputs, cfg.MODEL.DEVICE)}


class Zoo:
    def __init__(self, harness: Harness, output: str, methods: List[str], timed_images: int = 10,
                 env: Dict[str, str] = None, say=print):
        self.h = harness
        self.output = os.path.abspath(output)
        self.methods = declared_methods()
        self.names = method_order(methods)
        self.requested = [n for n in self.names if n in methods]
        self.timed_images = timed_images
        self.env = env
        self.say = say

    # --- folders ---------------------------------------------------------------------------
    def run_dir(self, name: str) -> str:
        return os.path.join(self.output, name)

    def final_weights(self, name: str) -> str:
        return os.path.join(self.run_dir(name), "model_final.pth")

    def proposal_file(self, name: str, dataset: str) -> str:
        return os.path.join(self.run_dir(name), f"proposals_{dataset}.pkl")

    def is_trained(self, name: str) -> bool:
        return os.path.isfile(self.final_weights(name)) and bool(last_eval_metrics(self.run_dir(name)))

    # --- one method ------------------------------------------------------------------------
    def train_opts(self, m: Method) -> List[str]:
        opts = harness_opts(m, self.h)
        if m.parent and m.proposals is None:
            opts += [m.parent_key, self.final_weights(m.parent)]
        if m.proposals is not None:
            opts += ["DATASETS.PROPOSAL_FILES_TRAIN", f"('{self.proposal_file(m.name, self.h.train)}',)",
                     "DATASETS.PROPOSAL_FILES_TEST", f"('{self.proposal_file(m.name, self.h.test)}',)",
                     "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN", str(self.h.proposals),
                     "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST", str(self.h.proposals)]
        return opts + ["OUTPUT_DIR", self.run_dir(m.name)]

    def _check_settings(self, m: Method, opts: List[str]):
        path = os.path.join(self.run_dir(m.name), "zoo_stage.json")
        settings = {"config": m.config, "opts": opts}
        started = os.path.isfile(os.path.join(self.run_dir(m.name), "last_checkpoint"))
        if os.path.isfile(path) and started:
            recorded = _read_json(path)
            # runs recorded before configs were addressed relative to segzoo's model zoo
            if str(recorded.get("config", "")).startswith("configs/"):
                recorded["config"] = recorded["config"][len("configs/"):]
            if recorded != settings:
                raise UserError(f"{self.run_dir(m.name)} holds a {m.name} run with other settings "
                                f"(see {path}); pick another --output")
        else:  # nothing trained yet: (re)write the settings
            write_json(path, settings, indent=1)

    def export_proposals(self, m: Method):
        parent_dir = self.run_dir(m.parent)
        for dataset in dict.fromkeys([self.h.train, self.h.test]):
            out = self.proposal_file(m.name, dataset)
            if os.path.isfile(out):
                continue
            self.say(f"[zoo] {m.name}: exporting {m.parent} proposals of {dataset}")
            run_command([
                sys.executable, "-m", m.proposals.export_module,
                "--config-file", os.path.join(parent_dir, "config.yaml"), "--dataset", dataset,
                "--output", out, "--top-k", str(self.h.proposals), "--resume", "--save-every", "50",
                "MODEL.WEIGHTS", self.final_weights(m.parent), "MODEL.DEVICE", self.h.device],
                f"{m.name}: proposal export", self.env)

    def train(self, m: Method) -> bool:
        """Train and evaluate ``m`` unless done; True when it was reused."""
        opts = self.train_opts(m)
        self._check_settings(m, opts)
        if self.is_trained(m.name):
            return True
        if m.parent and not self.is_trained(m.parent):
            raise UserError(f"{m.name} needs a trained {m.parent} in {self.run_dir(m.parent)}")
        if m.proposals is not None:
            self.export_proposals(m)
        run_train_net(m.config_file, opts, resume=True, what=f"{m.name}: training", env=self.env)
        if not self.is_trained(m.name):
            raise UserError(f"{m.name}: training ended without {self.final_weights(m.name)} and evaluation results")
        return False

    def measure_opts(self, m: Method) -> List[str]:
        """Overrides of the trained config for timing: a detector on another method's proposals
        computes them inside itself instead of reading the exported ones."""
        opts = ["MODEL.DEVICE", self.h.device]
        if m.proposals is not None:
            opts += m.proposals.online_opts(os.path.join(self.run_dir(m.parent), "config.yaml"),
                                            self.final_weights(m.parent), self.h.proposals)
        return opts

    def measure(self, m: Method) -> Dict:
        """Parameters, latency and inference peak memory of the trained model, measured in a fresh
        process and cached in ``zoo_measure.json``."""
        path = os.path.join(self.run_dir(m.name), "zoo_measure.json")
        key = {"version": 2, "device": self.h.device, "timed_images": self.timed_images,
               "threads": torch.get_num_threads()}
        if os.path.isfile(path):
            cached = _read_json(path)
            if cached.get("key") == key:
                return cached["result"]
        result = run_isolated(measure_trained, os.path.join(self.run_dir(m.name), "config.yaml"),
                              self.measure_opts(m), self.final_weights(m.name), self.h.test, self.timed_images,
                              torch.get_num_threads())
        write_json(path, {"key": key, "result": result}, indent=1)
        return result

    def row(self, m: Method, reused: bool) -> Dict:
        run = self.run_dir(m.name)
        last = last_eval_metrics(run)
        metrics = {k: v for k, v in last.items() if k != "iteration"}
        row = {"method": m.name, "label": m.label, "kind": m.kind, "config": m.config, "parent": m.parent,
               "note": m.note, "reused": reused, "output_dir": run,
               "iterations": last.get("iteration"),
               "train_s_per_iter": median_iteration_time(run), **self.measure(m), "metrics": metrics}
        return row

    # --- all --------------------------------------------------------------------------------
    def run(self) -> List[Dict]:
        rows, t0 = [], time.time()
        for i, name in enumerate(self.names, 1):
            m = self.methods[name]
            self.say(f"[zoo] ({i}/{len(self.names)}) {name}: {m.config}"
                     + (f" on {m.parent}" if m.parent else ""))
            t = time.time()
            reused = self.train(m)
            self.say(f"[zoo] ({i}/{len(self.names)}) {name}: "
                     + ("finished run reused" if reused else f"trained + evaluated in {time.time() - t:.0f}s")
                     + "; measuring")
            row = self.row(m, reused)
            self.say(f"[zoo] ({i}/{len(self.names)}) {name}: {row['latency_ms']:.0f} ms/image, "
                     f"{row['parameters'] / 1e6:.2f} M parameters; {time.time() - t0:.0f}s elapsed")
            if name in self.requested:
                rows.append(row)
        return rows
