//! The live channels of one configuration generation: each channel's driver, its concurrency
//! permits and its rate limiter.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;

use super::{Driver, build_driver};
use crate::config::{ChannelConfig, Generation};

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(rate: f64) -> RateLimiter {
        let burst = rate.max(1.0);
        RateLimiter {
            rate,
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
    }

    /// Whole tokens available now.
    pub fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        self.tokens.floor() as usize
    }

    pub fn take(&mut self, count: usize, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - count as f64).max(0.0);
    }
}

/// One channel, ready to send.
pub struct ChannelRuntime {
    pub config: ChannelConfig,
    pub driver: Arc<dyn Driver>,
    pub permits: Arc<Semaphore>,
    pub limiter: Option<Mutex<RateLimiter>>,
}

impl std::fmt::Debug for ChannelRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRuntime")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl ChannelRuntime {
    /// How many deliveries this channel can take now: free concurrency permits, further
    /// bounded by the rate limiter's tokens.
    pub fn capacity(&self, now: Instant) -> usize {
        let free = self.permits.available_permits();
        match &self.limiter {
            Some(limiter) => limiter
                .lock()
                .map(|mut l| l.available(now).min(free))
                .unwrap_or(0),
            None => free,
        }
    }

    pub fn take_tokens(&self, count: usize, now: Instant) {
        if let Some(limiter) = &self.limiter
            && let Ok(mut limiter) = limiter.lock()
        {
            limiter.take(count, now);
        }
    }
}

/// Every channel of a generation.
#[derive(Debug, Default)]
pub struct ChannelSet {
    pub generation: u64,
    pub channels: BTreeMap<String, Arc<ChannelRuntime>>,
}

impl ChannelSet {
    /// Builds the channels of `generation`. A channel whose settings did not change keeps its
    /// runtime from `previous`, so its connection pool and in-flight count carry over.
    pub fn build(
        generation: &Generation,
        previous: Option<&ChannelSet>,
        http: &reqwest::Client,
    ) -> Result<ChannelSet, Vec<String>> {
        let mut channels = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, config) in &generation.channels {
            if let Some(existing) = previous
                .and_then(|p| p.channels.get(name))
                .filter(|r| r.config == *config)
            {
                channels.insert(name.clone(), existing.clone());
                continue;
            }
            match build_driver(config, http) {
                Ok(driver) => {
                    let runtime = ChannelRuntime {
                        config: config.clone(),
                        driver,
                        permits: Arc::new(Semaphore::new(config.concurrency)),
                        limiter: config
                            .rate_limit
                            .map(|rate| Mutex::new(RateLimiter::new(rate))),
                    };
                    channels.insert(name.clone(), Arc::new(runtime));
                }
                Err(error) => errors.push(format!("channel {name}: {error}")),
            }
        }
        if errors.is_empty() {
            Ok(ChannelSet {
                generation: generation.number,
                channels,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rate_limiter_refills() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10.0);
        assert_eq!(limiter.available(start), 10);
        limiter.take(10, start);
        assert_eq!(limiter.available(start), 0);
        assert_eq!(limiter.available(start + Duration::from_millis(350)), 3);
        assert_eq!(limiter.available(start + Duration::from_secs(5)), 10);
    }

    #[test]
    fn slow_rate_has_burst_of_one() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(0.5);
        assert_eq!(limiter.available(start), 1);
        limiter.take(1, start);
        assert_eq!(limiter.available(start + Duration::from_secs(1)), 0);
        assert_eq!(limiter.available(start + Duration::from_secs(2)), 1);
    }
}
