use llmsim::report::plot::*;
fn main() {
    let chart = Chart {
        title: "Throughput vs arrival rate".into(),
        x_label: "arrival rate λ (req/s)".into(),
        y_label: "throughput (req/s)".into(),
        series: vec![
            Series::new("Scheduler A (sim)", Style::Simulated, (1..12).map(|i| Point::new(i as f64*0.25, (i as f64*0.25).min(1.19), 0.03)).collect()),
            Series::new("A capacity 1/E[T]", Style::Theory, vec![Point::new(0.25, 1.19, 0.0), Point::new(2.75, 1.19, 0.0)]),
        ],
        ..Default::default()
    };
    std::fs::write("/tmp/figtest/a.svg", chart.to_svg(720, 440).unwrap()).unwrap();
    let chart = Chart { title: "cats".into(), x_label: "config".into(), y_label: "TTFT (s)".into(), categories: vec!["baseline".into(), "half_c".into(), "double_a".into()],
      series: vec![Series::new("mean TTFT", Style::Markers, vec![Point::new(0.0, 0.2, 0.01), Point::new(1.0, 0.18, 0.01), Point::new(2.0, 0.35, 0.02)])], ..Default::default() };
    std::fs::write("/tmp/figtest/b.svg", chart.to_svg(720, 440).unwrap()).unwrap();
}
