//! A small pool of worker threads for the requests that wait on the device.
//!
//! A job owns its fuser reply (replies are `Send`) and answers the kernel itself, so the FUSE
//! request loop only queues it and goes back to reading requests.

use log::error;
use parking_lot::Mutex;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SendError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

type Job = Box<dyn FnOnce() + Send + 'static>;

pub(super) struct Pool {
    /// `None` once the pool is finished.
    queue: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub(super) fn new(workers: usize) -> io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut pool = Pool {
            queue: Some(tx),
            threads: Vec::with_capacity(workers),
        };
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            let thread = thread::Builder::new()
                .name(format!("stablefs-worker-{i}"))
                .spawn(move || work(&rx))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Runs `job` on a worker; on the calling thread if the pool is already finished.
    pub(super) fn run(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        let job = match &self.queue {
            Some(queue) => match queue.send(job) {
                Ok(()) => return,
                Err(SendError(job)) => job,
            },
            None => job,
        };
        job();
    }

    /// Lets the workers finish every queued job, then joins them.
    pub(super) fn finish(&mut self) {
        self.queue = None;
        for thread in self.threads.drain(..) {
            // A worker never panics: jobs are run under catch_unwind.
            let _ = thread.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.finish();
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, not while running it.
        let next = queue.lock().recv();
        let Ok(job) = next else {
            return; // the pool is finished and the queue is empty
        };
        // A panicking job drops its reply unanswered, and fuser answers EIO for it; the
        // worker itself lives on.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            error!("a request panicked on a worker thread; it was answered with EIO");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_job_before_finishing() {
        let done = Arc::new(AtomicUsize::new(0));
        let mut pool = Pool::new(3).unwrap();
        for _ in 0..100 {
            let done = Arc::clone(&done);
            pool.run(move || {
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        pool.finish();
        assert_eq!(done.load(Ordering::SeqCst), 100);
        // After finish, jobs run inline.
        let d = Arc::clone(&done);
        pool.run(move || {
            d.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(done.load(Ordering::SeqCst), 101);
    }

    #[test]
    fn a_panicking_job_does_not_kill_its_worker() {
        let done = Arc::new(AtomicUsize::new(0));
        let mut pool = Pool::new(1).unwrap();
        pool.run(|| panic!("test panic"));
        let d = Arc::clone(&done);
        pool.run(move || {
            d.fetch_add(1, Ordering::SeqCst);
        });
        pool.finish();
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
