//! burn 0.22.1's `vulkan` backend (cubecl's SPIR-V compiler) on the CPU's Vulkan device: one
//! element-wise kernel (no shared memory), then one matrix product (shared memory tiles).
use burn::tensor::{Device, DeviceKind, Tensor};

fn main() {
    let dev = Device::vulkan(DeviceKind::Cpu);
    let a = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &dev);
    let b = a.clone() + 1.0;
    eprintln!("a + 1 = {:?}", b.to_data().try_to_vec::<f32>().unwrap());
    let c = a.matmul(b);
    eprintln!("a · (a + 1) = {:?}", c.to_data().try_to_vec::<f32>().unwrap());
}
