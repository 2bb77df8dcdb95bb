"""A toy trainer hook: it records the loop's events (engine/hooks.py's HookBase)."""
from ppshitu.engine.hooks import HookBase


class ToyHook(HookBase):
    def __init__(self):
        self.events = []

    def before_train(self, trainer):
        self.events.append("before_train")

    def after_step(self, trainer, losses):
        self.events.append("after_step")

    def after_epoch(self, trainer):
        self.events.append("after_epoch")
