"""Time and cost of a `build-synthetic --engine ray` run from a measured per-core throughput.

    python recipes/ray/project_cost.py --ms-per-anomaly 7.0 --driver-ms-per-anomaly 0.5 --kib-per-anomaly 80
        [--normals 1000000 --per-normal 10 --cores-per-node 32 --nodes 8 --node-price 1.43 --efficiency 0.85]

--ms-per-anomaly: wall ms per pseudo anomaly on ONE core, synthesis + encoding (benchmarks/bench_build.py,
steady state, --num-proc 1, the "decode + synthesize + encode" stages: the parquet writing happens on the
driver). --driver-ms-per-anomaly: what the driver spends per row (the "parquet" + "other" stages of the
same benchmark): the driver writes every shard after its rows are back (shards do not overlap), so
the run takes rows x that on top of the workers' time, whatever the cluster size. --kib-per-anomaly: parquet bytes per row (the benchmark prints MiB per run). --efficiency: share of the cluster's cores kept busy (task scheduling, shard boundaries, spot
interruptions); 0.85 is an assumption, not a measurement. --node-price: USD per node-hour (c7i.8xlarge
on-demand in eu-west-1 was about 1.43 USD/h when this was written; spot is often ~40 % of it).
"""
import argparse


def project(ms_per_anomaly: float, normals: int, per_normal: int, cores_per_node: int, nodes: int,
            node_price: float, efficiency: float, head_price: float, driver_ms: float = 0.0,
            kib_per_anomaly: float = 0.0) -> dict:
    """Projected core-hours, wall hours and USD (workers + head) of one run, and the output volume in
    GiB. Shards run one after the other and the driver writes a shard after its rows are all back, so
    wall = workers' time + driver's time (no overlap)."""
    anomalies = normals * per_normal
    core_hours = anomalies * ms_per_anomaly / 1000 / 3600
    workers_h = core_hours / (cores_per_node * nodes * efficiency)
    driver_h = anomalies * driver_ms / 1000 / 3600
    wall_h = workers_h + driver_h
    return {"pseudo_anomalies": anomalies, "core_hours": core_hours, "workers_hours": workers_h,
            "driver_hours": driver_h, "wall_hours": wall_h, "usd": wall_h * (nodes * node_price + head_price),
            "output_gib": anomalies * kib_per_anomaly / 2**20}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ms-per-anomaly", type=float, required=True)
    p.add_argument("--driver-ms-per-anomaly", type=float, default=0.0)
    p.add_argument("--kib-per-anomaly", type=float, default=0.0)
    p.add_argument("--normals", type=int, default=1_000_000)
    p.add_argument("--per-normal", type=int, default=10)
    p.add_argument("--cores-per-node", type=int, default=32)
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--node-price", type=float, default=1.43)
    p.add_argument("--head-price", type=float, default=0.48, help="USD per hour of the head node (m7i.2xlarge)")
    p.add_argument("--efficiency", type=float, default=0.85)
    a = p.parse_args()
    r = project(a.ms_per_anomaly, a.normals, a.per_normal, a.cores_per_node, a.nodes, a.node_price, a.efficiency,
                a.head_price, a.driver_ms_per_anomaly, a.kib_per_anomaly)
    print(f"{r['pseudo_anomalies']:,} pseudo anomalies x {a.ms_per_anomaly} ms/core = {r['core_hours']:.1f} core-hours")
    print(f"workers: {a.nodes} x {a.cores_per_node} cores at {a.efficiency:.0%} -> {r['workers_hours']:.2f} h; "
          f"driver (writes every shard): {r['driver_hours']:.2f} h")
    print(f"wall ~{r['wall_hours']:.2f} h (workers + driver), "
          f"~{r['usd']:.0f} USD on demand; output ~{r['output_gib']:.0f} GiB of parquet")


if __name__ == "__main__":
    main()
