//! The searches every capacity question is made of, shared by the planner
//! ([`crate::plan`]) and the studies: the largest arrival rate at which a run passes
//! (bisection on the rate, with a fixed or a relative resolution) and the smallest GPU count
//! that passes (galloping, then bisection). They only call the closures they are given, so
//! common random numbers are the caller's: evaluating every rate of one replication with the
//! same seed makes the verdicts of neighbouring rates differ only by the rate.

use std::ops::ControlFlow;

/// A bisection's outcome: the largest rate found passing, and what the runs returned.
#[derive(Debug, Clone)]
pub struct Bisection<T> {
    /// Largest rate judged passing (requests/s); the bottom of the range when none did.
    pub rate: f64,
    /// Smallest rate judged failing (requests/s); the top of the range when none did.
    pub fail: f64,
    /// The run at `rate` (`None` when even the bottom of the range failed; the bottom is
    /// not run).
    pub at_max: Option<T>,
    /// The run at the top of the range.
    pub at_top: T,
    /// Runs made.
    pub evals: u32,
}

/// A rate search's first run, at the top of its range `hi` (requests/s): the whole search
/// when it passes, else its result to go on from.
fn run_top<T: Clone>(
    run: &mut impl FnMut(f64) -> T,
    pass: &impl Fn(&T) -> bool,
    hi: f64,
) -> ControlFlow<Bisection<T>, T> {
    let at_top = run(hi);
    if pass(&at_top) {
        ControlFlow::Break(Bisection {
            rate: hi,
            fail: hi,
            at_max: Some(at_top.clone()),
            at_top,
            evals: 1,
        })
    } else {
        ControlFlow::Continue(at_top)
    }
}

/// Bisects the arrival rate in `[lo, hi]` for the largest at which `run(rate)` passes
/// (`pass`), in `steps` halvings, after a first run at `hi` (which ends the search when it
/// passes). The final bracket `(rate, fail)` is `(hi - lo) / 2^steps` wide.
pub fn bisect<T: Clone>(
    mut run: impl FnMut(f64) -> T,
    pass: impl Fn(&T) -> bool,
    (mut lo, mut hi): (f64, f64),
    steps: u32,
) -> Bisection<T> {
    let at_top = match run_top(&mut run, &pass, hi) {
        ControlFlow::Break(done) => return done,
        ControlFlow::Continue(at_top) => at_top,
    };
    let mut at_max = None;
    for _ in 0..steps {
        let mid = 0.5 * (lo + hi);
        let t = run(mid);
        if pass(&t) {
            lo = mid;
            at_max = Some(t);
        } else {
            hi = mid;
        }
    }
    Bisection {
        rate: lo,
        fail: hi,
        at_max,
        at_top,
        evals: steps + 1,
    }
}

/// [`bisect`] starting near `guess` (requests/s), typically another replication's result:
/// after the same first run at `hi`, it gallops on the grid of `2^steps` cells that
/// bisection's brackets are made of, from the grid rate nearest `guess`, by 1, 2, 4, ...
/// cells until the verdict changes, then bisects between the last two. The final bracket
/// is one cell wide, as [`bisect`]'s; when verdicts are monotone in the rate it is the same
/// bracket, found in at most `2 log2(d) + 4` runs for a guess `d` cells off instead of
/// `steps + 1`.
pub fn bisect_near<T: Clone>(
    mut run: impl FnMut(f64) -> T,
    pass: impl Fn(&T) -> bool,
    (lo, hi): (f64, f64),
    steps: u32,
    guess: f64,
) -> Bisection<T> {
    let at_top = match run_top(&mut run, &pass, hi) {
        ControlFlow::Break(done) => return done,
        ControlFlow::Continue(at_top) => at_top,
    };
    let cells = 1_u64 << steps;
    let cell = (hi - lo) / cells as f64;
    let rate = |k: u64| if k == cells { hi } else { lo + k as f64 * cell };
    // Grid indices: `ok` passed (0, the bottom, is taken to), `bad` failed (the top did).
    let (mut ok, mut bad, mut at_max, mut evals) = (0, cells, None, 1);
    let mut judge = |k: u64, ok: &mut u64, bad: &mut u64, at_max: &mut Option<T>| {
        evals += 1;
        let t = run(rate(k));
        let passed = pass(&t);
        if passed {
            *ok = k;
            *at_max = Some(t);
        } else {
            *bad = k;
        }
        passed
    };
    if cells > 1 {
        let start = ((guess - lo) / cell).round().clamp(1.0, (cells - 1) as f64) as u64;
        let up = judge(start, &mut ok, &mut bad, &mut at_max);
        let mut stride = 1;
        loop {
            let next = if up {
                ok + stride
            } else {
                bad - stride.min(bad)
            };
            if next <= ok || next >= bad {
                break;
            }
            if judge(next, &mut ok, &mut bad, &mut at_max) != up {
                break;
            }
            stride *= 2;
        }
    }
    while bad - ok > 1 {
        judge((ok + bad) / 2, &mut ok, &mut bad, &mut at_max);
    }
    Bisection {
        rate: rate(ok),
        fail: rate(bad),
        at_max,
        at_top,
        evals,
    }
}

/// Where a rate search starts: a known failing rate (a closed-form capacity that is a hard
/// limit), or a guess to gallop from (a neighbouring point's capacity, the target rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// Rates at or above this fail (requests/s): bisect below it.
    Below(f64),
    /// No bound known: gallop from this rate (requests/s) up or down, by `factor` for two
    /// steps, then squaring the step at each further one, so that a good guess brackets the
    /// capacity closely and a bad one still does in few steps.
    Guess {
        /// The first rate run (requests/s).
        rate: f64,
        /// The first galloping step multiplies or divides the rate by this (> 1).
        factor: f64,
    },
}

/// The largest passing rate to a relative resolution: `rate` passes, `fail` does not, and
/// `fail - rate <= rel_tol * fail`. Gallops from [`Start::Guess`] until the verdict
/// changes (at most `max_evals` runs in all, rates kept within `[min_rate, max_rate]`),
/// then bisects. `rate` is 0 when even `min_rate` fails, and `fail` infinite when `max_rate`
/// passes. Returns also the number of runs made.
pub fn capacity(
    mut pass: impl FnMut(f64) -> bool,
    start: Start,
    (min_rate, max_rate): (f64, f64),
    rel_tol: f64,
    max_evals: u32,
) -> RateSearch {
    let mut evals = 0;
    let mut check = |rate: f64, evals: &mut u32| {
        *evals += 1;
        pass(rate)
    };
    let (mut lo, mut hi) = match start {
        Start::Below(hi) => (0.0, hi.min(max_rate)),
        Start::Guess { rate, mut factor } => {
            let mut x = rate.clamp(min_rate, max_rate);
            if check(x, &mut evals) {
                loop {
                    if x >= max_rate {
                        return RateSearch {
                            rate: x,
                            fail: f64::INFINITY,
                            evals,
                        };
                    }
                    let up = (x * factor).min(max_rate);
                    if evals >= max_evals || !check(up, &mut evals) {
                        break (x, up);
                    }
                    x = up;
                    // Two steps of `factor` first: a guess off by up to two of them
                    // is bracketed without overshooting.
                    if evals >= 3 {
                        factor *= factor;
                    }
                }
            } else {
                loop {
                    if x <= min_rate {
                        return RateSearch {
                            rate: 0.0,
                            fail: x,
                            evals,
                        };
                    }
                    let down = (x / factor).max(min_rate);
                    if evals >= max_evals {
                        break (0.0, x);
                    }
                    if check(down, &mut evals) {
                        break (down, x);
                    }
                    x = down;
                    if evals >= 3 {
                        factor *= factor;
                    }
                }
            }
        }
    };
    // Below `min_rate` nothing is searched: the capacity is reported as 0.
    while hi - lo > rel_tol * hi && hi > min_rate && evals < max_evals {
        let mid = 0.5 * (lo + hi);
        if check(mid, &mut evals) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    RateSearch {
        rate: lo,
        fail: hi,
        evals,
    }
}

/// The outcome of [`capacity`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSearch {
    /// Largest rate found passing (requests/s; 0 when none did).
    pub rate: f64,
    /// Smallest rate found failing (requests/s; infinite when none did).
    pub fail: f64,
    /// Runs made.
    pub evals: u32,
}

/// The smallest count in `start..=max` whose run passes, assuming more never hurts:
/// galloping upward (`start`, `start + 1`, `start + 3`, `start + 7`, ...) to the first count
/// that passes, then bisecting between the largest count seen failing and it. Returns every
/// count run with its result, in increasing order of count; the last failing count below
/// the minimal one is always among them (unless the minimum is `start`).
pub fn min_count<T>(
    start: usize,
    max: usize,
    mut run: impl FnMut(usize) -> T,
    pass: impl Fn(&T) -> bool,
) -> Vec<(usize, T)> {
    let mut points = Vec::new();
    let (mut lo, mut hi) = (None, None);
    let mut n = start;
    loop {
        let p = run(n);
        let met = pass(&p);
        points.push((n, p));
        if met {
            hi = Some(n);
            break;
        }
        lo = Some(n);
        if n >= max {
            break;
        }
        n = (start + 2 * (n - start) + 1).min(max);
    }
    if let (Some(mut lo), Some(mut hi)) = (lo, hi) {
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            let p = run(mid);
            if pass(&p) {
                hi = mid;
            } else {
                lo = mid;
            }
            points.push((mid, p));
        }
    }
    points.sort_by_key(|p| p.0);
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisect_halves_the_bracket_each_step() {
        let b = bisect(|r| r, |&r| r < 0.3, (0.0, 1.0), 4);
        assert_eq!((b.rate, b.fail), (0.25, 0.3125));
        assert_eq!(b.evals, 5);
        assert_eq!(b.at_max, Some(0.25));
        assert_eq!(b.at_top, 1.0);
        let all = bisect(|r| r, |_| true, (0.0, 2.0), 4);
        assert_eq!((all.rate, all.evals), (2.0, 1));
        let none = bisect(|r| r, |_| false, (0.0, 2.0), 3);
        assert_eq!((none.rate, none.at_max), (0.0, None));
    }

    /// From any guess, galloping ends on the bracket bisection finds (verdicts monotone in
    /// the rate), within 2 log2(d) + 4 runs for a guess d cells off.
    #[test]
    fn bisect_near_ends_on_bisections_bracket_from_any_guess() {
        let (range, steps) = ((0.0, 12.8), 7);
        let cell = 0.1;
        for threshold in [0.0, 0.05, 0.1, 3.33, 6.4, 12.75, 12.8, 20.0] {
            let pass = |r: &f64| *r <= threshold + 1e-9;
            let plain = bisect(|r| r, pass, range, steps);
            for guess in [-1.0, 0.0, 0.1, 3.3, 3.4, 7.0, 12.7, 12.8, 99.0] {
                let near = bisect_near(|r| r, pass, range, steps, guess);
                assert!(
                    (near.rate - plain.rate).abs() < 1e-9,
                    "{threshold} {guess}: {near:?}"
                );
                assert!(
                    (near.fail - plain.fail).abs() < 1e-9,
                    "{threshold} {guess}: {near:?}"
                );
                assert_eq!(near.at_max.is_some(), plain.at_max.is_some());
                if let Some(r) = near.at_max {
                    assert!((r - near.rate).abs() < 1e-9);
                }
                assert_eq!(near.at_top, 12.8);
                let off = ((guess.clamp(0.1, 12.7) - plain.rate) / cell)
                    .abs()
                    .max(1.0);
                assert!(
                    f64::from(near.evals) <= 2.0 * off.log2() + 4.0,
                    "{threshold} {guess}: {} runs",
                    near.evals
                );
            }
        }
        // No steps: the top run alone.
        let none = bisect_near(|r| r, |&r| r < 0.5, (0.0, 1.0), 0, 0.5);
        assert_eq!((none.rate, none.fail, none.evals), (0.0, 1.0, 1));
        // A guess on the bracket takes the top run and its two ends.
        let exact = bisect_near(|r| r, |&r| r < 3.35, range, steps, 3.3);
        assert_eq!((exact.evals, exact.at_max), (3, Some(3.3000000000000003)));
    }

    #[test]
    fn capacity_brackets_the_threshold_from_any_start() {
        for threshold in [0.013, 1.0, 7.5, 333.0] {
            for start in [
                Start::Guess {
                    rate: 1.0,
                    factor: 2.0,
                },
                Start::Guess {
                    rate: 50.0,
                    factor: 1.3,
                },
                Start::Below(1000.0),
            ] {
                let s = capacity(|r| r <= threshold, start, (1e-6, 1e6), 0.01, 200);
                assert!(s.rate <= threshold && threshold < s.fail, "{s:?}");
                assert!(s.fail - s.rate <= 0.01 * s.fail, "{s:?}");
            }
        }
        let never = capacity(
            |_| false,
            Start::Guess {
                rate: 1.0,
                factor: 2.0,
            },
            (0.25, 10.0),
            0.01,
            100,
        );
        assert_eq!((never.rate, never.fail, never.evals), (0.0, 0.25, 3));
        let below = capacity(|_| false, Start::Below(8.0), (0.5, 10.0), 0.01, 100);
        assert_eq!((below.rate, below.fail, below.evals), (0.0, 0.5, 4));
        let always = capacity(|_| true, Start::Below(5.0), (0.0, 10.0), 0.01, 100);
        assert!(always.rate > 4.9 && always.fail == 5.0);
        let limited = capacity(|r| r < 3.0, Start::Below(1e6), (0.0, 1e6), 1e-9, 10);
        assert_eq!(limited.evals, 10);
    }

    #[test]
    fn min_count_finds_the_first_passing_count_with_its_failing_neighbour() {
        for need in 1..=20 {
            let mut runs = 0;
            let pts = min_count(
                1,
                16,
                |n| {
                    runs += 1;
                    n
                },
                |&n| n >= need,
            );
            let first = pts.iter().find(|p| p.0 >= need).map(|p| p.0);
            if need <= 16 {
                assert_eq!(first, Some(need));
                if need > 1 {
                    assert!(pts.iter().any(|p| p.0 == need - 1));
                }
            } else {
                assert_eq!(first, None);
            }
            assert!(runs <= 10, "{need}: {runs} runs");
        }
    }
}
