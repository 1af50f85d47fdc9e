use burn::tensor::{Distribution, Int, Tensor, TensorData};
use nmflow_host::backend::{Cpu, CpuAutodiff};
use std::time::Instant;
type B = Cpu;
fn t<F: FnMut()>(name: &str, mut f: F) {
    f();
    let s = Instant::now();
    for _ in 0..50 {
        f();
    }
    println!(
        "{name}: {:.3} ms",
        s.elapsed().as_secs_f64() * 1000.0 / 50.0
    );
}
fn main() {
    let d = Default::default();
    let x = Tensor::<B, 2>::random([60000, 784], Distribution::Normal(0., 1.), &d);
    let idx: Vec<i64> = (0..4096).map(|i| (i * 13 % 60000) as i64).collect();
    let it = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [4096]), &d);
    t("select", || {
        let _ = x
            .clone()
            .select(0, it.clone())
            .reshape([64, 64, 784])
            .into_data();
    });
    let xb = x.clone().select(0, it.clone()).reshape([64, 64, 784]);
    let w = Tensor::<B, 3>::random([64, 10, 784], Distribution::Normal(0., 1.), &d);
    let wt = w.clone().swap_dims(1, 2);
    t("bmm swap", || {
        let _ = xb.clone().matmul(w.clone().swap_dims(1, 2)).into_data();
    });
    let wc = Tensor::<B, 3>::from_data(wt.clone().into_data(), &d);
    t("bmm contiguous", || {
        let _ = xb.clone().matmul(wc.clone()).into_data();
    });
    let g = Tensor::<B, 3>::random([64, 64, 10], Distribution::Normal(0., 1.), &d);
    t("grad w = x^T g", || {
        let _ = xb.clone().swap_dims(1, 2).matmul(g.clone()).into_data();
    });
    t("grad x = g w", || {
        let _ = g.clone().matmul(w.clone()).into_data();
    });
    type A = CpuAutodiff;
    let xa: Tensor<A, 3> = Tensor::from_inner(xb.clone());
    t("full fwd+bwd autodiff", || {
        let wa: Tensor<A, 3> = Tensor::from_inner(w.clone()).require_grad();
        let y = xa.clone().matmul(wa.clone().swap_dims(1, 2));
        let l = y.sum();
        let gr = l.backward();
        let _ = wa.grad(&gr).unwrap().into_data();
    });
}
