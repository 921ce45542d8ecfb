//! Small helpers the commands share: scraping a service's `/metrics`, and
//! reading a process's memory and CPU from `/proc`.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The body of `GET path` on `addr` (HTTP/1.0, enough for the admin server).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(out))
}

/// Metric samples from a Prometheus text body: `(name{labels}, value)`.
pub fn samples(body: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Sum of all samples of a metric, over its labels.
pub fn sum(samples: &[(String, f64)], name: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, _)| n == name || n.starts_with(&format!("{name}{{")))
        .fold(0.0, |acc, (_, v)| acc + v)
}

/// `label value → sample` of one metric family, e.g. DLQ counts by reason.
pub fn by_label(samples: &[(String, f64)], name: &str, label: &str) -> Vec<(String, f64)> {
    let prefix = format!("{name}{{");
    let needle = format!("{label}=\"");
    samples
        .iter()
        .filter(|(n, _)| n.starts_with(&prefix))
        .filter_map(|(n, v)| {
            let start = n.find(&needle)? + needle.len();
            let end = start + n[start..].find('"')?;
            Some((n[start..end].to_string(), *v))
        })
        .collect()
}

/// Resident and peak resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields = rest.split_whitespace().collect::<Vec<_>>();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds the whole machine has been busy (every core, all but idle and iowait).
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    busy_seconds(stat.lines().next()?)
}

/// Busy seconds from the `cpu` line of `/proc/stat` (ticks of 1/100 s).
fn busy_seconds(cpu_line: &str) -> Option<f64> {
    let ticks = cpu_line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(str::parse::<u64>)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_all_but_idle_and_iowait() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let line = "cpu  1000 20 300 5000 100 7 3 0 40 0";
        assert_eq!(busy_seconds(line), Some(13.3));
        assert_eq!(busy_seconds("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(busy_seconds("cpu  1 2 x"), None);
    }

    #[test]
    fn metric_samples_are_summed_and_split_by_label() {
        let body = "# HELP x\ningest_dlq_total{reason=\"missing_field\"} 3\ningest_dlq_total{reason=\"unknown_type\"} 2\ningest_events_in_total 10\n";
        let s = samples(body);
        assert_eq!(sum(&s, "ingest_dlq_total"), 5.0);
        assert_eq!(sum(&s, "ingest_events_in_total"), 10.0);
        assert_eq!(
            by_label(&s, "ingest_dlq_total", "reason"),
            vec![
                ("missing_field".to_string(), 3.0),
                ("unknown_type".to_string(), 2.0)
            ]
        );
    }

    #[test]
    fn this_process_has_memory_and_cpu_figures() {
        let pid = std::process::id();
        let (rss, peak) = rss_mib(pid).unwrap();
        assert!(rss > 0.0 && peak >= rss, "{rss} {peak}");
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
    }
}
