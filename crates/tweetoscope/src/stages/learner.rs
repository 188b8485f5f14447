//! Learner stage: keeps a bounded window of samples per observation window and retrains that
//! window's random forest every `retrain_every` new samples (a tenth of the samples held, once
//! that is more: see [`tweetoscope_predict::Trainer`]), publishing it on `models`.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tokio::sync::Semaphore;
use tweetoscope_forest::ForestParams;
use tweetoscope_messages::{to_payload, Sample};
use tweetoscope_predict::{
    learner_metadata, parse_learner_metadata, train, Trainer, TrainingJob, MAX_MODEL_BYTES,
};

use super::StageEnv;
use crate::config::LearnerArgs;
use crate::events::{
    InternalEvent as _, ModelTrained, TrainingFailed, TrainingFailure, TrainingSuperseded,
};
use crate::kafka::{Handled, Handler, Outgoing};

const STAGE: &str = "learner";

/// Which training of each window was asked for last. Trainings run one at a time, in order; one
/// whose turn comes while a newer one of its window waits is skipped, since the newer one trains
/// on the same samples and more: when training cannot keep up with the samples, the learner
/// publishes the newest model as soon as it can instead of every intermediate one (the inputs of
/// a skipped training are committed without output, as those of a sample that trains nothing).
/// A training is known by its model version, which grows with every training of its window.
#[derive(Debug, Clone, Default)]
struct Supersession {
    /// The newest version asked for, by window.
    newest: Arc<std::sync::Mutex<HashMap<u64, u64>>>,
}

impl Supersession {
    /// Records the training of `version` asked for `window`.
    fn ask(&self, window: u64, version: u64) {
        self.newest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(window, version);
    }

    /// Whether `version` is still the newest training asked for `window`.
    fn is_newest(&self, window: u64, version: u64) -> bool {
        self.newest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&window)
            == Some(&version)
    }
}

/// What a training gives back: the model or the training's error, or the panic's message.
type Trained = Result<Result<tweetoscope_messages::ModelMessage, String>, String>;

/// A thread the learner trains on. The first model of each window is trained at the default
/// CPU priority: until it exists the window's predictions go uncorrected. Every later one, a
/// refinement whose newest job supersedes the queued ones, is trained at the lowest priority
/// (Linux's `SCHED_IDLE`, and nice 19), as are the threads the forest grows its trees on (Linux
/// threads inherit both): when the learner shares its cores with the stages that make
/// predictions (`run`, `bench`, or a crowded node), it takes the CPU they leave idle instead of
/// half of it. A learner alone in its container trains as fast as before.
#[derive(Debug, Clone)]
struct TrainingThread {
    jobs: std::sync::mpsc::Sender<(TrainingJob, tokio::sync::oneshot::Sender<Trained>)>,
}

/// The CPU priority of a [`TrainingThread`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrainingPriority {
    /// The default, for each window's first model.
    Default,
    /// The lowest (`SCHED_IDLE`, nice 19), for the models that replace one.
    Lowest,
}

/// The learner's two training threads (one training runs at a time: the learner's semaphore).
#[derive(Debug, Clone)]
struct TrainingThreads {
    first_models: TrainingThread,
    later_models: TrainingThread,
}

impl TrainingThreads {
    fn start(params: &Arc<ForestParams>) -> std::io::Result<Self> {
        Ok(Self {
            first_models: TrainingThread::start(params.clone(), TrainingPriority::Default)?,
            later_models: TrainingThread::start(params.clone(), TrainingPriority::Lowest)?,
        })
    }

    /// The thread for a job: its window's first model or a later one.
    fn for_job(&self, job: &TrainingJob) -> &TrainingThread {
        if job.version <= 1 {
            &self.first_models
        } else {
            &self.later_models
        }
    }
}

impl TrainingThread {
    /// Starts the thread; it ends when the last handle is dropped.
    fn start(params: Arc<ForestParams>, priority: TrainingPriority) -> std::io::Result<Self> {
        let (jobs, queue) =
            std::sync::mpsc::channel::<(TrainingJob, tokio::sync::oneshot::Sender<Trained>)>();
        let name = match priority {
            TrainingPriority::Default => "learner-first",
            TrainingPriority::Lowest => "learner-later",
        };
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if priority == TrainingPriority::Lowest {
                    if let Err(e) = lowest_cpu_priority() {
                        tracing::warn!(error = %e, "the training thread keeps the default CPU priority");
                    }
                }
                for (job, reply) in queue {
                    let trained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        train(&job, &params)
                    }))
                    .map_err(|panic| {
                        panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "training panicked".into())
                    });
                    let _ = reply.send(trained);
                }
            })?;
        Ok(Self { jobs })
    }

    /// Trains `job` on the thread.
    async fn train(&self, job: TrainingJob) -> Trained {
        let (reply, trained) = tokio::sync::oneshot::channel();
        self.jobs
            .send((job, reply))
            .map_err(|_| "the training thread has stopped".to_owned())?;
        trained
            .await
            .map_err(|_| "the training thread has stopped".to_owned())?
    }
}

/// Gives the calling thread the lowest CPU priority: Linux's `SCHED_IDLE` policy (it runs when
/// nothing else of the machine wants the CPU, and any other thread that wakes up takes the CPU
/// from it at once), with nice 19 for the record (on Linux both belong to the thread, and threads
/// it starts inherit them); nothing elsewhere.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lowest_cpu_priority() -> std::io::Result<()> {
    // SAFETY: setpriority reads its three integer arguments only; `who` 0 is the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call, which only reads it; pid 0
    // is the calling thread. SCHED_IDLE needs no privilege.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn lowest_cpu_priority() -> std::io::Result<()> {
    Ok(())
}

/// The learner wired to Kafka.
#[derive(Debug)]
pub struct LearnerHandler {
    trainer: Trainer,
    capacity: usize,
    /// Input partition of each window.
    window_partition: HashMap<u64, i32>,
    threads: TrainingThreads,
    training: Arc<Semaphore>,
    /// The newest training asked for, by window (see [`Supersession`]).
    newest: Supersession,
    metrics: Arc<crate::metrics::Metrics>,
    topics: crate::config::TopicArgs,
    kafka: crate::kafka::KafkaSettings,
}

impl Handler for LearnerHandler {
    fn handle(&mut self, message: &BorrowedMessage<'_>) -> Handled {
        let sample = match Sample::parse(message.key(), message.payload().unwrap_or_default()) {
            Ok(s) => s,
            Err(m) => return Handled::Malformed(m),
        };
        self.window_partition
            .insert(sample.window(), message.partition());
        let job = self.trainer.add(&sample);
        let window = sample.window().to_string();
        self.metrics
            .training_samples
            .with_label_values(&[&window])
            .set(self.trainer.samples(sample.window()) as i64);
        let Some(job) = job else {
            return Handled::Now(Vec::new());
        };
        let thread = self.threads.for_job(&job).clone();
        let metrics = self.metrics.clone();
        let topic = self.topics.models_topic.clone();
        let training = self.training.clone();
        let newest = self.newest.clone();
        newest.ask(job.window, job.version);
        Handled::Later(Box::pin(async move {
            let Ok(_turn) = training.acquire_owned().await else {
                return Vec::new();
            };
            if !newest.is_newest(job.window, job.version) {
                TrainingSuperseded {
                    window: job.window,
                    version: job.version,
                }
                .emit(&metrics);
                return Vec::new();
            }
            let (window_of_job, version, samples) = (job.window, job.version, job.rows.len());
            match thread.train(job).await {
                Ok(Ok(model)) => {
                    let payload = to_payload(&model);
                    if payload.len() > MAX_MODEL_BYTES {
                        TrainingFailed {
                            window: Some(window_of_job),
                            failure: TrainingFailure::TooLarge,
                            error: format!("{} bytes, at most {MAX_MODEL_BYTES}", payload.len()),
                        }
                        .emit(&metrics);
                        return Vec::new();
                    }
                    ModelTrained {
                        window: window_of_job,
                        version,
                        samples,
                        bytes: payload.len(),
                        growth_blended: model.growth.as_ref().map(|g| g.blend),
                    }
                    .emit(&metrics);
                    vec![Outgoing::keyed(&topic, window, payload)]
                }
                Ok(Err(e)) => {
                    TrainingFailed {
                        window: Some(window_of_job),
                        failure: TrainingFailure::Error,
                        error: e,
                    }
                    .emit(&metrics);
                    Vec::new()
                }
                Err(e) => {
                    TrainingFailed {
                        window: Some(window_of_job),
                        failure: TrainingFailure::Panic,
                        error: e,
                    }
                    .emit(&metrics);
                    Vec::new()
                }
            }
        }))
    }

    fn checkpoint(&self, _topic: &str, partition: i32, processed: i64) -> (i64, String) {
        let mut totals: Vec<(u64, u64)> = self
            .window_partition
            .iter()
            .filter(|(_, &p)| p == partition)
            .map(|(&w, _)| (w, self.trainer.total(w)))
            .collect();
        totals.sort_unstable();
        (processed, learner_metadata(processed, &totals))
    }

    fn resume(
        &mut self,
        topic: &str,
        partition: i32,
        committed: Option<(i64, &str)>,
    ) -> anyhow::Result<()> {
        let Some((offset, metadata)) = committed else {
            return Ok(());
        };
        let totals = parse_learner_metadata(metadata);
        if totals.is_empty() {
            return Ok(());
        }
        // The newest `capacity` samples of each window lie within the last capacity × windows
        // records of the partition (a partition holds few windows).
        let span = (self.capacity * totals.len()) as i64;
        let records =
            self.kafka
                .read_partition_range(topic, partition, Some(offset - span), Some(offset))?;
        let mut recent: HashMap<u64, Vec<Sample>> = HashMap::new();
        for (key, value) in records {
            if let Some(Ok(s)) = value.map(|v| Sample::parse(key.as_deref(), &v)) {
                recent.entry(s.window()).or_default().push(s);
            }
        }
        for (window, total) in totals {
            let samples = recent.remove(&window).unwrap_or_default();
            let keep = samples.len().saturating_sub(self.capacity);
            self.trainer.restore(window, &samples[keep..], total);
            self.window_partition.insert(window, partition);
            tracing::info!(
                window,
                total,
                rebuilt = samples.len() - keep,
                "training window restored"
            );
        }
        Ok(())
    }

    fn revoke(&mut self, _topic: &str, partition: i32) {
        let windows: Vec<u64> = self
            .window_partition
            .iter()
            .filter(|(_, &p)| p == partition)
            .map(|(&w, _)| w)
            .collect();
        for w in windows {
            self.trainer.forget(w);
            self.window_partition.remove(&w);
        }
    }
}

/// Runs the learner until shutdown.
pub async fn run(env: StageEnv, args: LearnerArgs) -> anyhow::Result<()> {
    TrainingFailed::register(&env.metrics);
    let params = Arc::new(args.forest_params());
    params.validate()?;
    tracing::info!(
        retrain_every = args.retrain_every,
        training_window = args.training_window,
        trees = args.trees,
        "learner started"
    );
    let handler = LearnerHandler {
        trainer: Trainer::new(args.retrain_every, args.training_window as usize),
        capacity: args.training_window as usize,
        window_partition: HashMap::new(),
        threads: TrainingThreads::start(&params)?,
        // One training at a time, in the order they were asked for: versions go out in order.
        training: Arc::new(Semaphore::new(1)),
        newest: Supersession::default(),
        metrics: env.metrics.clone(),
        topics: env.topics.clone(),
        kafka: env.kafka.clone(),
    };
    let input = env.input(STAGE, &env.topics.samples_topic);
    env.consume(input, |_| Ok(handler)).await
}

#[cfg(test)]
mod tests {
    use super::{Supersession, TrainingThreads};
    use std::sync::Arc;
    use tweetoscope_messages::Sample;
    use tweetoscope_predict::Trainer;

    /// Field `n` (numbered as in proc(5)) of a `/proc/…/stat` file, from field 3 on.
    #[cfg(target_os = "linux")]
    fn stat_field(stat: &std::path::Path, n: usize) -> Option<i32> {
        let stat = std::fs::read_to_string(stat).ok()?;
        // After "pid (comm) ", field 3 (state) comes first.
        let fields = stat.rsplit_once(") ")?.1;
        fields.split_whitespace().nth(n - 3)?.parse().ok()
    }

    /// The nice value in a `/proc/…/stat` file (field 19).
    #[cfg(target_os = "linux")]
    fn nice_in(stat: &std::path::Path) -> Option<i32> {
        stat_field(stat, 19)
    }

    /// The `stat` file of this process's thread named `name` (Linux).
    #[cfg(target_os = "linux")]
    fn stat_of_thread(name: &str) -> Option<std::path::PathBuf> {
        std::fs::read_dir("/proc/self/task").ok()?.find_map(|task| {
            let dir = task.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            (comm.trim_end() == name).then(|| dir.join("stat"))
        })
    }

    /// The nice value of this process's thread named `name` (Linux).
    #[cfg(target_os = "linux")]
    fn nice_of_thread(name: &str) -> Option<i32> {
        nice_in(&stat_of_thread(name)?)
    }

    /// The scheduling policy (field 41) of this process's thread named `name` (Linux).
    #[cfg(target_os = "linux")]
    fn policy_of_thread(name: &str) -> Option<i32> {
        stat_field(&stat_of_thread(name)?, 41)
    }

    #[tokio::test]
    async fn first_models_are_trained_at_the_default_priority_later_ones_when_the_cpu_is_idle() {
        let mut trainer = Trainer::new(40, 40);
        let jobs: Vec<_> = (0..80)
            .filter_map(|i| {
                let x = [
                    0.001 * f64::from(1 + i % 7),
                    0.1 + 0.01 * f64::from(i),
                    5.0 + f64::from(i),
                ];
                let sample = Sample::new(format!("c{i}").as_str().into(), 600, x, 1.0 + x[1]);
                trainer.add(&sample)
            })
            .collect();
        let threads = TrainingThreads::start(&Arc::new(tweetoscope_predict::forest_params(5, 1)))
            .expect("the training threads start");
        let mut trained = Vec::new();
        for job in jobs {
            let thread = threads.for_job(&job);
            let first = std::ptr::eq(thread, &threads.first_models);
            let model = thread.train(job).await.expect("no panic").expect("a model");
            trained.push((model.version, model.n_samples, first));
        }
        assert_eq!(trained, vec![(1, 40, true), (2, 40, false)]);
        #[cfg(target_os = "linux")]
        {
            let ours = nice_in(std::path::Path::new("/proc/thread-self/stat"));
            assert!(ours.is_some(), "cannot read this thread's nice value");
            assert_eq!(
                nice_of_thread("learner-first"),
                ours,
                "the priority it started with"
            );
            assert_eq!(nice_of_thread("learner-later"), Some(19));
            assert_eq!(
                policy_of_thread("learner-first"),
                Some(libc::SCHED_OTHER),
                "first models at the normal policy"
            );
            assert_eq!(policy_of_thread("learner-later"), Some(libc::SCHED_IDLE));
        }
    }

    #[test]
    fn a_training_is_superseded_only_by_a_newer_one_of_its_own_window() {
        let newest = Supersession::default();
        newest.ask(600, 1);
        newest.ask(1200, 1);
        assert!(newest.is_newest(600, 1), "nothing newer yet");
        newest.ask(600, 2);
        assert!(!newest.is_newest(600, 1));
        assert!(newest.is_newest(600, 2));
        assert!(newest.is_newest(1200, 1), "another window's training");
        assert!(!newest.is_newest(21600, 1), "a window never asked for");
    }
}
