"""Threads that own their state (predictors, a Gallery), fed through an admission-bounded queue.

A Paddle predictor with oneDNN must run on the thread that made it: the old stdlib server ran the
detector on a new thread per request and every second request died with
`RuntimeError: std::exception`. Here each thread builds its own state (`make_state()`, e.g. a
RecognitionSystem with its own predictors) and is the only one that ever touches it; requests hand
it jobs `fn(state)` and await the result.

Admission is decided when a job is submitted, never by blocking: at most `workers + queue` jobs are
admitted at once, and together they hold at most `max_pixels` decoded pixels (one job is always
admitted, so an image under the per-image limit is never refused for its size alone). A job that
does not fit raises Busy (HTTP 503 + Retry-After) at once; a job that waited longer than
`queue_timeout` is answered Busy instead of being run late.
"""
import concurrent.futures
import logging
import math
import queue
import threading
import time

log = logging.getLogger("ppshitu.serving")


class Busy(Exception):
    """The queue is full (or a job waited too long): retry after `retry_after` seconds."""

    def __init__(self, message, retry_after=1):
        super().__init__(message)
        self.retry_after = max(1, int(math.ceil(retry_after)))


class ThreadOwner:
    def __init__(self, name, make_state, workers=1, capacity=32, queue_timeout=30.0, max_pixels=None,
                 before_job=None):
        self.name, self._make_state, self.workers = name, make_state, int(workers)
        self.capacity = int(capacity)
        self.queue_timeout = float(queue_timeout)
        self.max_pixels = max_pixels
        self._before_job = before_job       # before_job(state), on the owning thread (e.g. gallery refresh)
        self._jobs = queue.Queue()  # bounded by admission, not by blocking puts
        self._lock = threading.Lock()
        self._admitted = 0                  # running + waiting
        self._pixels = 0
        self._avg_s = 0.1                   # moving average of a job's run time (Retry-After estimate)
        self._threads, self._states = [], []
        self._ready = threading.Barrier(self.workers + 1)
        self._errors = []
        self.rejected = 0

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout=600):
        """Start the threads; each builds its state; raises the first thread's error."""
        for i in range(self.workers):
            t = threading.Thread(target=self._run, name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._ready.wait(timeout)
        if self._errors:
            self.stop()
            raise self._errors[0]
        return self

    def stop(self, timeout=10):
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout)

    @property
    def states(self):
        """The threads' states, for read-only facts (fingerprint, embedding size) set at build time."""
        return list(self._states)

    # ------------------------------------------------------------ admission
    def stats(self):
        with self._lock:
            return {"running_or_waiting": self._admitted, "workers": self.workers, "capacity": self.capacity,
                    "pixels_in_flight": self._pixels, "rejected": self.rejected,
                    "avg_job_ms": round(self._avg_s * 1000, 1)}

    def full(self):
        with self._lock:
            return self._admitted >= self.workers + self.capacity

    def check_room(self):
        """Raise Busy now if a job could not be admitted (before the request is read and decoded)."""
        with self._lock:
            if self._admitted >= self.workers + self.capacity:
                self.rejected += 1
                raise Busy(f"{self.name} queue full: {self._admitted} jobs running or waiting (its limit); retry later",
                           self.retry_after())

    def retry_after(self):
        waiting = max(0, self._admitted - self.workers) + 1
        return waiting * self._avg_s / self.workers

    def submit(self, fn, pixels=0):
        """Queue `fn(state)`; a concurrent.futures.Future of its result. Raises Busy when full."""
        with self._lock:
            if self._admitted >= self.workers + self.capacity:
                self.rejected += 1
                raise Busy(f"{self.name} queue full: {self._admitted} jobs running or waiting (its limit); retry later",
                           self.retry_after())
            if pixels and self.max_pixels and self._admitted and self._pixels + pixels > self.max_pixels:
                self.rejected += 1
                raise Busy(f"{self.name}: {self._pixels / 1e6:.1f} MP of images already waiting; retry later",
                           self.retry_after())
            self._admitted += 1
            self._pixels += pixels
        fut = concurrent.futures.Future()
        self._jobs.put((fut, fn, pixels, time.monotonic()))
        return fut

    def _release(self, pixels):
        with self._lock:
            self._admitted -= 1
            self._pixels -= pixels

    # ------------------------------------------------------------ the owning thread
    def _run(self):
        try:
            state = self._make_state()
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._errors.append(e)
            self._ready.wait()
            return
        self._states.append(state)
        self._ready.wait()
        while True:
            job = self._jobs.get()
            if job is None:
                break
            fut, fn, pixels, queued_at = job
            try:
                if not fut.set_running_or_notify_cancel():
                    continue  # the request went away while it waited
                waited = time.monotonic() - queued_at
                if waited > self.queue_timeout:
                    fut.set_exception(Busy(f"{self.name}: waited {waited:.0f} s in the queue (limit "
                                           f"{self.queue_timeout:.0f} s); retry later", self.retry_after()))
                    continue
                started = time.monotonic()
                try:
                    if self._before_job is not None:
                        self._before_job(state)
                    result = fn(state)
                except BaseException as e:  # noqa: BLE001 - handed to the request, which answers it
                    fut.set_exception(e)
                else:
                    fut.set_result(result)
                with self._lock:
                    self._avg_s = 0.8 * self._avg_s + 0.2 * (time.monotonic() - started)
            finally:
                self._release(pixels)

