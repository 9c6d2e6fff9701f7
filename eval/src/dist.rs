//! The processes of a data-parallel job: one process, or the ranks of an MPI job.
//!
//! `mpirun -np N cae-bench pretrain …` (or `srun`) starts N processes; with the `mpi` cargo
//! feature each becomes a rank of `MPI_COMM_WORLD` and [`Mpi`] implements the pretraining loop's
//! [`Collective`] with MPI's own all-reduce and barrier (the `mpi` crate over the system's MPI
//! library: Open MPI, MPICH, or a cluster's vendor MPI). Without the feature, a binary started by
//! an MPI launcher refuses to run rather than let every process train alone on the whole data and
//! write the same files.

use cae_pretrain::train::{Collective, SingleProcess};

/// The environment variables by which launchers tell a process how many there are: Open MPI's
/// `mpirun`, MPICH / Intel MPI's Hydra (PMI), and SLURM's `srun` (the tasks of this job step).
const SIZE_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"];

/// The job size an MPI launcher announced to this process, if any (and the variable saying so).
pub fn launcher_size() -> Option<(usize, &'static str)> {
    SIZE_VARS.iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 1)
            .map(|n| (n, *var))
    })
}

/// The job this process belongs to: [`Mpi`] under an MPI launcher (feature `mpi`), else one
/// process. Started by a launcher for several processes without the feature: an error.
pub fn join() -> anyhow::Result<Box<dyn Collective>> {
    match launcher_size() {
        Some((n, var)) if n > 1 => join_mpi(n, var),
        _ => Ok(Box::new(SingleProcess)),
    }
}

#[cfg(not(feature = "mpi"))]
fn join_mpi(n: usize, var: &str) -> anyhow::Result<Box<dyn Collective>> {
    anyhow::bail!(
        "started as one of {n} processes ({var}={n}) by an MPI launcher, but this binary was \
         built without MPI, so every process would train alone on the whole data and write the \
         same files; rebuild with `cargo build --release --features mpi` (needs an MPI library \
         and libclang, e.g. `apt install libopenmpi-dev libclang-dev`)"
    )
}

#[cfg(feature = "mpi")]
fn join_mpi(n: usize, _var: &str) -> anyhow::Result<Box<dyn Collective>> {
    let mpi = Mpi::init()?;
    anyhow::ensure!(
        mpi.size() == n,
        "the launcher announced {n} processes but MPI_COMM_WORLD has {}",
        mpi.size()
    );
    Ok(Box::new(mpi))
}

/// A rank of an MPI job (`MPI_COMM_WORLD`). MPI is finalised when this is dropped.
#[cfg(feature = "mpi")]
pub struct Mpi {
    world: mpi::topology::SimpleCommunicator,
    // Dropped last: finalises MPI.
    _universe: mpi::environment::Universe,
    library: String,
}

#[cfg(feature = "mpi")]
impl Mpi {
    /// Initialises MPI (once per process).
    pub fn init() -> anyhow::Result<Self> {
        let universe = mpi::initialize()
            .ok_or_else(|| anyhow::anyhow!("MPI was already initialised in this process"))?;
        let world = universe.world();
        let library = mpi::environment::library_version()
            .map(|s| s.lines().next().unwrap_or_default().trim().to_string())
            .unwrap_or_else(|_| "unknown MPI library".into());
        Ok(Mpi {
            world,
            _universe: universe,
            library,
        })
    }
}

#[cfg(feature = "mpi")]
impl Collective for Mpi {
    fn rank(&self) -> usize {
        use mpi::topology::Communicator;
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        use mpi::topology::Communicator;
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), cae_pretrain::PretrainError> {
        use mpi::collective::{CommunicatorCollectives, SystemOperation};
        if buf.len() > i32::MAX as usize {
            return Err(cae_pretrain::PretrainError::Config(format!(
                "an all-reduce of {} values exceeds MPI's count limit",
                buf.len()
            )));
        }
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }

    fn barrier(&self) -> Result<(), cae_pretrain::PretrainError> {
        use mpi::collective::CommunicatorCollectives;
        self.world.barrier();
        Ok(())
    }

    fn describe(&self) -> String {
        format!("MPI: {}", self.library)
    }
}

/// Ends an MPI job after an error on this rank (the others would wait forever); a no-op for one
/// process. The error has been printed by then.
pub fn abort_job(collective: &dyn Collective) {
    if collective.size() > 1 {
        #[cfg(feature = "mpi")]
        {
            // MPI_Abort on the world communicator: every rank of the job ends.
            use mpi::topology::Communicator;
            let world = mpi::topology::SimpleCommunicator::world();
            world.abort(1);
        }
    }
}
