"""train_net.py that kills itself with SIGKILL, as the OOM killer or a preemption would. Used by
``test_resume.py``:

    python tests/interrupted_train_net.py after-iteration N TRAIN_NET_ARGS...   # after iteration N
    python tests/interrupted_train_net.py saving N TRAIN_NET_ARGS...            # halfway through
                                                                              # writing checkpoint N
"""
import os
import signal
import sys


def main(argv):
    mode, at, args = argv[0], int(argv[1]), argv[2:]
    import torch

    import segzoo.train_net as train_net
    from detectron2.engine import HookBase

    if mode == "after-iteration":
        class Kill(HookBase):
            def after_step(self):
                if self.trainer.iter == at:
                    os.kill(os.getpid(), signal.SIGKILL)

        build_hooks = train_net.Trainer.build_hooks
        train_net.Trainer.build_hooks = lambda self: build_hooks(self) + [Kill()]
    elif mode == "saving":
        save = torch.save

        def killed_while_saving(obj, f, *a, **k):
            if isinstance(obj, dict) and obj.get("iteration") == at:
                f.write(b"\x50\x4b" + b"\0" * 4096)  # the start of a checkpoint, then the process dies
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return save(obj, f, *a, **k)

        torch.save = killed_while_saving
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    train_net.cli(args)


if __name__ == "__main__":
    main(sys.argv[1:])
