//! Flashing several devices with one command: one worker thread per device opens it, plans
//! and proves its own plan (devices differ), and waits; after one confirmation the workers run
//! their plans, at most `jobs` at a time, retrying transient transport failures (never a
//! refusal), each recorded in the run log. Every event reaches the caller tagged with its
//! device, so one renderer can show a line per device.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::Error;
use crate::history::flash_recorded;
use crate::plan::{FlashOptions, Flashed};
use crate::progress::{Cancel, Event, Observer};
use crate::request::{Planned, Wanted};
use crate::session::Session;
use crate::transport::Pace;
use crate::DeviceRef;

/// One device's plan, or why it has none.
#[derive(Debug)]
pub struct DevicePlan {
    /// The device reference.
    pub device: String,
    /// "sim:a (Photon)" once the device was opened.
    pub label: String,
    /// The plan, or why there is none (nothing is written to that device).
    pub planned: Result<Planned, Error>,
}

/// What happened to one device.
#[derive(Debug)]
pub struct DeviceRun {
    /// The device reference.
    pub device: String,
    /// "sim:a (Photon)".
    pub label: String,
    /// The flash, or why it failed (`None`: nothing to do, or not run).
    pub flashed: Option<Result<Flashed, Error>>,
    /// Attempts made (more than one after transient failures).
    pub attempts: u32,
    /// Seconds from the go to the end.
    pub seconds: f64,
}

impl DeviceRun {
    /// The device ends as its plan predicted.
    pub fn verified(&self) -> bool {
        matches!(&self.flashed, Some(Ok(f)) if f.verified())
    }
}

/// What a worker tells the caller.
enum Report {
    Planned(usize, DevicePlan),
    Event(usize, Event),
    Done(usize, DeviceRun),
}

/// How to run the plans.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Devices flashed at once (at least 1).
    pub jobs: usize,
    /// Extra attempts after a transient transport failure.
    pub retries: u32,
    /// Keep what each plan replaces.
    pub backup: bool,
    /// How fast virtual devices work.
    pub pace: Pace,
}

/// A counting semaphore: at most `jobs` devices are written at once.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn take(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
    }

    fn give(&self) {
        *self.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.freed.notify_one();
    }
}

/// The go a worker waits for.
struct Go {
    options: RunOptions,
    slots: Arc<Slots>,
    cancel: Cancel,
}

/// Devices being planned and flashed.
pub struct Fleet {
    workers: Vec<(Sender<Option<Go>>, JoinHandle<()>)>,
    reports: Receiver<Report>,
}

/// Forwards a worker's events to the caller, tagged with its device.
struct Tagged {
    device: usize,
    to: Sender<Report>,
}

impl Observer for Tagged {
    fn event(&mut self, event: Event) {
        let _ = self.to.send(Report::Event(self.device, event));
    }
}

/// A failure worth another attempt: the connection failed, not the device's judgement.
fn transient(e: &Error) -> bool {
    matches!(e, Error::Usb(_) | Error::Serial(_) | Error::Dfu(_)) && !e.is_check_failure()
}

impl Fleet {
    /// Starts a worker per device: each opens its device and plans `wanted` on it. Collect the
    /// plans with [`Fleet::plans`].
    pub fn plan(devices: &[DeviceRef], wanted: &Wanted) -> Self {
        let (to_caller, reports) = channel();
        let workers = devices
            .iter()
            .enumerate()
            .map(|(index, devref)| {
                let (go_tx, go_rx) = channel();
                let to = to_caller.clone();
                let devref = devref.clone();
                let wanted = wanted.clone();
                let handle = std::thread::spawn(move || work(index, &devref, &wanted, &to, &go_rx));
                (go_tx, handle)
            })
            .collect();
        Self { workers, reports }
    }

    /// Waits for every device's plan; `on_event` sees what happens meanwhile (device index,
    /// event). The plans come back in device order.
    pub fn plans(&mut self, on_event: &mut dyn FnMut(usize, Event)) -> Vec<DevicePlan> {
        let mut plans: Vec<Option<DevicePlan>> = (0..self.workers.len()).map(|_| None).collect();
        let mut missing = plans.len();
        while missing > 0 {
            match self.reports.recv() {
                Ok(Report::Planned(i, p)) => {
                    plans[i] = Some(p);
                    missing -= 1;
                }
                Ok(Report::Event(i, e)) => on_event(i, e),
                // Workers report Done only after the go.
                Ok(Report::Done(..)) => {}
                Err(_) => break,
            }
        }
        plans
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                p.unwrap_or_else(|| DevicePlan {
                    device: format!("device {i}"),
                    label: format!("device {i}"),
                    planned: Err(Error::BadRequest {
                        what: "its worker stopped before planning".into(),
                        help: "run the command again".into(),
                    }),
                })
            })
            .collect()
    }

    /// Lets every worker go (or, with `go` false, release its device untouched) and waits for
    /// them; `on_event` sees every event as it happens. The runs come back in device order.
    pub fn run(
        self,
        go: Option<RunOptions>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(usize, Event),
    ) -> Vec<DeviceRun> {
        let slots = Arc::new(Slots {
            free: Mutex::new(go.map_or(1, |o| o.jobs.max(1))),
            freed: Condvar::new(),
        });
        for (tx, _) in &self.workers {
            let _ = tx.send(go.map(|options| Go {
                options,
                slots: Arc::clone(&slots),
                cancel: cancel.clone(),
            }));
        }
        let count = self.workers.len();
        let mut runs: Vec<Option<DeviceRun>> = (0..count).map(|_| None).collect();
        let mut pending = count;
        // Every worker holds a sender: the channel closes when the last one ends.
        while pending > 0 {
            match self.reports.recv() {
                Ok(Report::Done(i, r)) => {
                    runs[i] = Some(r);
                    pending -= 1;
                }
                Ok(Report::Event(i, e)) => on_event(i, e),
                Ok(Report::Planned(..)) => {}
                Err(_) => break,
            }
        }
        for (_, handle) in self.workers {
            let _ = handle.join();
        }
        runs.into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| DeviceRun {
                    device: format!("device {i}"),
                    label: format!("device {i}"),
                    flashed: None,
                    attempts: 0,
                    seconds: 0.0,
                })
            })
            .collect()
    }
}

/// One device's worker: open, plan, wait for the go, run with retries, report.
fn work(
    index: usize,
    devref: &DeviceRef,
    wanted: &Wanted,
    to: &Sender<Report>,
    go: &Receiver<Option<Go>>,
) {
    let mut observer = Tagged {
        device: index,
        to: to.clone(),
    };
    let device = devref.to_string();
    let opened = Session::open(devref);
    let (mut session, label) = match opened {
        Ok(s) => {
            let label = s.label();
            (s, label)
        }
        Err(e) => {
            let _ = to.send(Report::Planned(
                index,
                DevicePlan {
                    device: device.clone(),
                    label: device.clone(),
                    planned: Err(e),
                },
            ));
            // Reported once the run starts, like every device.
            let _ = go.recv();
            finish(to, index, &device, &device, None, 0, Instant::now());
            return;
        }
    };
    let (wanted, planned) = match wanted.for_platform(session.platform()) {
        Ok(mine) => {
            let planned = mine.plan_from(&mut session, &mut observer);
            (mine, planned)
        }
        Err(e) => (wanted.clone(), Err(e)),
    };
    let plan_copy = planned.as_ref().ok().cloned();
    let _ = to.send(Report::Planned(
        index,
        DevicePlan {
            device: device.clone(),
            label: label.clone(),
            planned,
        },
    ));
    let started = Instant::now();
    let (Some(mut planned), Ok(Some(go))) = (plan_copy, go.recv()) else {
        finish(to, index, &device, &label, None, 0, started);
        return;
    };
    if planned.plan.steps.is_empty() {
        finish(to, index, &device, &label, None, 0, started);
        return;
    }
    go.slots.take();
    let options = FlashOptions {
        backup: go.options.backup,
    };
    let mut attempts = 1;
    let mut session = Some(session);
    let flashed = loop {
        // Open at every attempt: a failed reopen ends the loop.
        let Some(open) = session.as_mut() else {
            break Err(Error::BadRequest {
                what: "the device's connection was lost between attempts".into(),
                help: "run the command again".into(),
            });
        };
        open.set_pace(go.options.pace);
        let result = flash_recorded(open, &planned, options, &mut observer, &go.cancel);
        match result {
            Err(e)
                if transient(&e) && attempts <= go.options.retries && !go.cancel.is_cancelled() =>
            {
                observer.event(Event::warning(format!(
                    "{label}: {e}; trying again ({} of {})",
                    attempts + 1,
                    go.options.retries + 1
                )));
                attempts += 1;
                // A fresh connection and a fresh plan: what was written is skipped. The old
                // connection is saved and let go first (a virtual device is locked by it).
                save(open, &label, &mut observer);
                session = None;
                let retry = Session::open(devref).and_then(|mut s| {
                    let p = wanted.plan_from(&mut s, &mut observer)?;
                    Ok((s, p))
                });
                match retry {
                    Ok((s, p)) => {
                        session = Some(s);
                        planned = p;
                    }
                    Err(e) => break Err(e),
                }
            }
            other => break other,
        }
    };
    if let Some(open) = session.as_mut() {
        save(open, &label, &mut observer);
    }
    drop(session);
    go.slots.give();
    finish(to, index, &device, &label, Some(flashed), attempts, started);
}

/// Saves what changed on the device (a virtual device's state); a failure is a warning, the
/// run's result stands.
fn save(session: &mut Session<'_>, label: &str, observer: &mut dyn Observer) {
    if let Err(e) = session.save() {
        observer.event(Event::warning(format!("{label}: {e}")));
    }
}

fn finish(
    to: &Sender<Report>,
    index: usize,
    device: &str,
    label: &str,
    flashed: Option<Result<Flashed, Error>>,
    attempts: u32,
    started: Instant,
) {
    let _ = to.send(Report::Done(
        index,
        DeviceRun {
            device: device.to_string(),
            label: label.to_string(),
            flashed,
            attempts,
            seconds: started.elapsed().as_secs_f64(),
        },
    ));
}
