//! Many plugin processes at once: the building block of the burst and scale scenarios.

use super::*;

pub(crate) struct Job {
    pub(crate) container: String,
    pub(crate) stdin: Vec<u8>,
    pub(crate) eni: String,
    pub(crate) ip: Ipv4Addr,
}

#[derive(Default)]
pub(crate) struct Phase {
    pub(crate) wall_s: f64,
    pub(crate) execs: Vec<Exec>,
    /// Per pod, from its first attempt's start to its successful end.
    pub(crate) pod_ms: Vec<f64>,
    pub(crate) failures: Vec<String>,
    pub(crate) retried: usize,
    pub(crate) not_done: usize,
    pub(crate) calls: OpCalls,
    pub(crate) peak: Peak,
    pub(crate) sim_cpu_ms: f64,
}

/// Runs `command` for every job with at most `in_flight` processes alive; a failed job is run again
/// up to `attempts` times in all, a second later. Returns when every job succeeded or gave up.
pub(crate) fn phase(
    ctx: &Ctx,
    command: &str,
    jobs: &[Job],
    in_flight: usize,
    attempts: usize,
) -> Phase {
    let live: Live = Arc::new(Mutex::new(HashSet::new()));
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Phase::default());
    let workers = in_flight.min(jobs.len()).max(1);
    let barrier = Barrier::new(workers + 1);
    let before = ctx.sim.calls();
    let cpu0 = child::self_cpu_ms();
    let sampler = Sampler::start(live.clone(), Duration::from_millis(10), 200_000);
    let mut t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                barrier.wait();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let start = Instant::now();
                    let mut done = false;
                    for attempt in 0..attempts {
                        if attempt > 0 {
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        let mut cmd = plugin_cmd(&ctx.plugin, command, &job.container, &job.stdin);
                        let r = child::run(&mut cmd, &job.stdin, Some(&live));
                        let mut res = results.lock().unwrap();
                        if attempt > 0 {
                            res.retried += 1;
                        }
                        match r {
                            Ok(e) if e.ok() => {
                                res.pod_ms
                                    .push(e.ended.duration_since(start).as_secs_f64() * 1000.0);
                                res.execs.push(e);
                                done = true;
                            }
                            Ok(e) => {
                                res.failures.push(format!(
                                    "{command} {}: {}",
                                    job.container,
                                    e.failure()
                                ));
                                res.execs.push(e);
                            }
                            Err(e) => res.failures.push(e),
                        }
                        drop(res);
                        if done {
                            break;
                        }
                    }
                    if !done {
                        results.lock().unwrap().not_done += 1;
                    }
                }
            });
        }
        barrier.wait();
        t0 = Instant::now();
    });
    let wall = t0.elapsed();
    let peak = sampler.stop();
    let mut p = results.into_inner().unwrap();
    p.wall_s = wall.as_secs_f64();
    p.calls = delta(&before, &ctx.sim.calls());
    p.sim_cpu_ms = child::self_cpu_ms() - cpu0;
    p.peak = peak;
    // What the simulator holds must match what the runtime was told.
    let state = ctx.sim.state();
    let wrong = jobs
        .iter()
        .filter(|j| {
            let held = state
                .eni(&j.eni)
                .is_some_and(|e| e.private_ips.contains(&j.ip));
            held != (command == "ADD")
        })
        .count();
    if wrong > 0 {
        p.failures.push(format!(
            "{command}: the simulator disagrees for {wrong} of {} pods",
            jobs.len()
        ));
    }
    p
}
