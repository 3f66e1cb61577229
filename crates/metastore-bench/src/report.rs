//! The benchmark report: etcd benchmark's summary layout, then one JSON line.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Latency statistics of one run.
pub struct Report {
    name: &'static str,
    lat: Vec<f64>,
    errors: u64,
    total: Duration,
}

impl Report {
    pub fn new(name: &'static str, lat: Vec<Duration>, errors: u64, total: Duration) -> Report {
        let mut lat: Vec<f64> = lat.iter().map(|d| d.as_secs_f64()).collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        Report {
            name,
            lat,
            errors,
            total,
        }
    }

    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return 0.0;
        }
        // Rank of the percentile (nearest rank), guarded against float noise such as 99.9 * 10 / 10.
        let i = ((p * self.lat.len() as f64) / 100.0 - 1e-9).ceil() as usize;
        self.lat[i.clamp(1, self.lat.len()) - 1]
    }

    pub fn print(&self) {
        let n = self.lat.len() as f64;
        let secs = self.total.as_secs_f64();
        let avg = if n > 0.0 {
            self.lat.iter().sum::<f64>() / n
        } else {
            0.0
        };
        let var = if n > 0.0 {
            self.lat.iter().map(|x| (x - avg).powi(2)).sum::<f64>() / n
        } else {
            0.0
        };
        let rps = if secs > 0.0 { n / secs } else { 0.0 };
        let (fast, slow) = (
            self.lat.first().copied().unwrap_or(0.0),
            self.lat.last().copied().unwrap_or(0.0),
        );
        println!("\nSummary:");
        println!("  Total:\t{secs:.4} secs.");
        println!("  Slowest:\t{slow:.4} secs.");
        println!("  Fastest:\t{fast:.4} secs.");
        println!("  Average:\t{avg:.4} secs.");
        println!("  Stddev:\t{:.4} secs.", var.sqrt());
        println!("  Requests/sec:\t{rps:.4}");
        if self.errors > 0 {
            println!("  Errors:\t{}", self.errors);
        }
        println!("\nResponse time histogram:");
        let buckets = 10;
        let width = (slow - fast) / buckets as f64;
        let mut counts = vec![0usize; buckets + 1];
        for &x in &self.lat {
            let b = if width > 0.0 {
                (((x - fast) / width) as usize).min(buckets)
            } else {
                0
            };
            counts[b] += 1;
        }
        let max = counts.iter().copied().max().unwrap_or(1).max(1);
        for (i, c) in counts.iter().enumerate() {
            let bar = "∎".repeat(c * 40 / max);
            println!("  {:.4} [{c}]\t|{bar}", fast + width * i as f64);
        }
        println!("\nLatency distribution:");
        for p in [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9] {
            println!("  {p}% in {:.4} secs.", self.pct(p));
        }
        println!(
            "{{\"bench\":\"{}\",\"requests\":{},\"errors\":{},\"seconds\":{secs:.6},\"rps\":{rps:.2},\"avg_ms\":{:.4},\"p50_ms\":{:.4},\"p90_ms\":{:.4},\"p99_ms\":{:.4},\"p999_ms\":{:.4},\"max_ms\":{:.4}}}",
            self.name,
            self.lat.len(),
            self.errors,
            avg * 1e3,
            self.pct(50.0) * 1e3,
            self.pct(90.0) * 1e3,
            self.pct(99.0) * 1e3,
            self.pct(99.9) * 1e3,
            slow * 1e3,
        );
    }
}

/// A progress line on a terminal (nothing when stderr is not one).
pub struct Progress {
    stop: Arc<AtomicBool>,
    task: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(done: Arc<AtomicU64>, total: u64) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { stop, task: None };
        }
        let s = stop.clone();
        let task = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let d = done.load(Ordering::Relaxed).min(total);
                let width = 40;
                let filled = (d * width / total.max(1)) as usize;
                eprint!(
                    "\r {d} / {total} [{}{}] {:.0}%",
                    "=".repeat(filled),
                    " ".repeat(width as usize - filled),
                    d as f64 * 100.0 / total.max(1) as f64
                );
                let _ = std::io::stderr().flush();
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!();
        });
        Progress {
            stop,
            task: Some(task),
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let lat = (1..=1000).map(Duration::from_millis).collect();
        let r = Report::new("t", lat, 0, Duration::from_secs(1));
        assert_eq!(r.pct(50.0), 0.5);
        assert_eq!(r.pct(99.9), 0.999);
        assert_eq!(r.pct(100.0), 1.0);
    }
}
