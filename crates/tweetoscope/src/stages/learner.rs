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

/// The thread the learner trains on, at the lowest CPU priority (nice 19), as are the threads
/// the forest grows its trees on (Linux threads inherit it). Training is background work whose
/// newest job supersedes the queued ones: when the learner shares its cores with the stages that
/// make predictions (`run`, `bench`, or a crowded node), it takes the CPU they leave idle instead of
/// half of it. A learner alone in its container trains as fast as before.
#[derive(Debug, Clone)]
struct TrainingThread {
    jobs: std::sync::mpsc::Sender<(TrainingJob, tokio::sync::oneshot::Sender<Trained>)>,
}

impl TrainingThread {
    /// Starts the thread; it ends when the last handle is dropped.
    fn start(params: Arc<ForestParams>) -> std::io::Result<Self> {
        let (jobs, queue) =
            std::sync::mpsc::channel::<(TrainingJob, tokio::sync::oneshot::Sender<Trained>)>();
        std::thread::Builder::new()
            .name("learner-training".into())
            .spawn(move || {
                if let Err(e) = lowest_cpu_priority() {
                    tracing::warn!(error = %e, "the training thread keeps the default CPU priority");
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

/// Gives the calling thread the lowest CPU priority, nice 19 (on Linux the nice value belongs to
/// the thread, and threads it starts inherit it); nothing elsewhere.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lowest_cpu_priority() -> std::io::Result<()> {
    // SAFETY: setpriority reads its three integer arguments only; `who` 0 is the calling thread.
    let status = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
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
    thread: TrainingThread,
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
        let thread = self.thread.clone();
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
        thread: TrainingThread::start(params)?,
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
    use super::{Supersession, TrainingThread};
    use std::sync::Arc;
    use tweetoscope_messages::Sample;
    use tweetoscope_predict::Trainer;

    /// The nice value of the calling thread.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn nice_of_this_thread() -> i32 {
        // SAFETY: getpriority reads its two integer arguments only; `who` 0 is this thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[tokio::test]
    async fn models_are_trained_on_a_thread_of_the_lowest_priority() {
        let mut trainer = Trainer::new(40, 40);
        let job = (0..40)
            .filter_map(|i| {
                let x = [
                    0.001 * (1 + i % 7) as f64,
                    0.1 + 0.01 * i as f64,
                    5.0 + i as f64,
                ];
                let sample = Sample::new(format!("c{i}").as_str().into(), 600, x, 1.0 + x[1]);
                trainer.add(&sample)
            })
            .last()
            .expect("a job after 40 samples");
        let thread = TrainingThread::start(Arc::new(tweetoscope_predict::forest_params(5, 1)))
            .expect("the training thread starts");
        let model = thread.train(job).await.expect("no panic").expect("a model");
        assert_eq!((model.t_obs, model.version, model.n_samples), (600, 1, 40));
        #[cfg(target_os = "linux")]
        {
            let nice = std::thread::spawn(|| {
                super::lowest_cpu_priority().expect("setpriority");
                nice_of_this_thread()
            })
            .join()
            .unwrap();
            assert_eq!(nice, 19);
            assert_ne!(nice_of_this_thread(), 19, "only the thread that asked");
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
