//! Training targets of the RPN and the RoI head: mmdet's `MaxIoUAssigner` and `RandomSampler`
//! (protocols.md §3.1).
//!
//! **Assigner** (mmdet 2.x `MaxIoUAssigner.assign_wrt_overlaps`), for boxes `B` (anchors or
//! proposals) against ground truths `G`:
//! 1. every box starts *ignored*; with no ground truth every box is *negative*;
//! 2. a box whose best IoU is in `[0, neg_iou_thr)` is negative;
//! 3. a box whose best IoU is `≥ pos_iou_thr` is positive, matched to that ground truth;
//! 4. low-quality matches (`match_low_quality`): for each ground truth in order whose best IoU
//!    with any box is `≥ min_pos_iou`, every box reaching that best IoU (`gt_max_assign_all`)
//!    becomes positive for it, so every object has at least one positive box; a later ground
//!    truth overrides an earlier one;
//! 5. crowd regions (COCO `iscrowd`, mmdet's `gt_bboxes_ignore`) are not ground truths. With
//!    `ignore_iof_thr = Some(t)`, a box whose intersection with a crowd box covers more than `t`
//!    of the box's own area is ignored (neither positive nor negative) before steps 3–4; with
//!    `None` (mmdet's Mask R-CNN configs: `ignore_iof_thr = -1`) crowds are simply dropped.
//!
//! **Sampler** (`RandomSampler`): at most `num · pos_fraction` positives drawn at random from
//! the positives, then `num − #positives` negatives drawn at random from the negatives; with
//! `add_gt_as_proposals` the ground-truth boxes are prepended to the boxes first (the RoI head),
//! so each is a positive of itself.

use rand::Rng;
use rand::seq::index::sample;

use super::iou::{box_area, box_iou};
use super::{BBox, Result, check_boxes, invalid};

/// What a box is assigned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigned {
    /// Neither positive nor negative: no loss.
    Ignore,
    /// Background.
    Negative,
    /// Matched to ground truth `i`.
    Positive(usize),
}

/// mmdet's `MaxIoUAssigner`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaxIouAssigner {
    /// IoU at or above which a box is positive.
    pub pos_iou_thr: f32,
    /// IoU below which a box is negative.
    pub neg_iou_thr: f32,
    /// Least IoU of a low-quality match.
    pub min_pos_iou: f32,
    /// Whether low-quality matches make positives.
    pub match_low_quality: bool,
    /// Share of a box covered by a crowd region above which the box is ignored.
    pub ignore_iof_thr: Option<f32>,
}

impl MaxIouAssigner {
    /// The RPN's: positive ≥ 0.7, negative < 0.3, low-quality matches from 0.3.
    pub fn rpn() -> Self {
        Self {
            pos_iou_thr: 0.7,
            neg_iou_thr: 0.3,
            min_pos_iou: 0.3,
            match_low_quality: true,
            ignore_iof_thr: None,
        }
    }

    /// The RoI head's: positive ≥ 0.5, negative < 0.5, low-quality matches from 0.5.
    pub fn rcnn() -> Self {
        Self {
            pos_iou_thr: 0.5,
            neg_iou_thr: 0.5,
            min_pos_iou: 0.5,
            match_low_quality: true,
            ignore_iof_thr: None,
        }
    }

    /// Assigns `boxes` to `gts` (crowd regions in `crowds`).
    pub fn assign(&self, boxes: &[BBox], gts: &[BBox], crowds: &[BBox]) -> Result<Vec<Assigned>> {
        check_boxes("gt boxes", gts)?;
        check_boxes("crowd boxes", crowds)?;
        let n = boxes.len();
        if gts.is_empty() {
            check_boxes("boxes", boxes)?;
            let mut out = vec![Assigned::Negative; n];
            self.ignore_crowds(boxes, crowds, &mut out);
            return Ok(out);
        }
        let g = gts.len();
        // [n × g]
        let iou = box_iou(boxes, gts)?;
        let mut best = vec![(f32::NEG_INFINITY, 0usize); n];
        for (i, b) in best.iter_mut().enumerate() {
            for j in 0..g {
                // torch.max returns the first maximum.
                if iou[i * g + j] > b.0 {
                    *b = (iou[i * g + j], j);
                }
            }
        }
        let mut out = vec![Assigned::Ignore; n];
        for (o, &(v, _)) in out.iter_mut().zip(&best) {
            if v >= 0.0 && v < self.neg_iou_thr {
                *o = Assigned::Negative;
            }
        }
        self.ignore_crowds(boxes, crowds, &mut out);
        for (o, &(v, j)) in out.iter_mut().zip(&best) {
            if v >= self.pos_iou_thr {
                *o = Assigned::Positive(j);
            }
        }
        if self.match_low_quality {
            for j in 0..g {
                let gt_best = (0..n)
                    .map(|i| iou[i * g + j])
                    .fold(f32::NEG_INFINITY, f32::max);
                if n == 0 || gt_best < self.min_pos_iou {
                    continue;
                }
                for (i, o) in out.iter_mut().enumerate() {
                    if iou[i * g + j] == gt_best {
                        *o = Assigned::Positive(j);
                    }
                }
            }
        }
        Ok(out)
    }

    fn ignore_crowds(&self, boxes: &[BBox], crowds: &[BBox], out: &mut [Assigned]) {
        let Some(t) = self.ignore_iof_thr else {
            return;
        };
        for (b, o) in boxes.iter().zip(out.iter_mut()) {
            let area = box_area(b);
            if area <= 0.0 {
                continue;
            }
            let covered = crowds.iter().any(|c| {
                let w = (b[2].min(c[2]) - b[0].max(c[0])).max(0.0);
                let h = (b[3].min(c[3]) - b[1].max(c[1])).max(0.0);
                w * h / area > t
            });
            if covered {
                *o = Assigned::Ignore;
            }
        }
    }
}

/// mmdet's `RandomSampler`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomSampler {
    /// Boxes per image.
    pub num: usize,
    /// Largest share of positives.
    pub pos_fraction: f64,
    /// Whether the ground-truth boxes join the boxes as proposals (the RoI head).
    pub add_gt_as_proposals: bool,
}

/// The boxes chosen for the loss of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// Indices (into the boxes, ground truths first when they were added) of the positives.
    pub pos: Vec<usize>,
    /// Ground truth of each positive.
    pub pos_gt: Vec<usize>,
    /// Indices of the negatives.
    pub neg: Vec<usize>,
}

impl Sampled {
    /// Positives and negatives together.
    pub fn len(&self) -> usize {
        self.pos.len() + self.neg.len()
    }

    /// Whether nothing was sampled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RandomSampler {
    /// The RPN's: 256 anchors, half positive.
    pub fn rpn() -> Self {
        Self {
            num: 256,
            pos_fraction: 0.5,
            add_gt_as_proposals: false,
        }
    }

    /// The RoI head's: 512 RoIs, a quarter positive, ground truths added.
    pub fn rcnn() -> Self {
        Self {
            num: 512,
            pos_fraction: 0.25,
            add_gt_as_proposals: true,
        }
    }

    /// Samples from an assignment. (With `add_gt_as_proposals` the caller assigns the boxes
    /// `gts ++ proposals`; see [`sample_rois`].)
    pub fn sample(&self, assigned: &[Assigned], rng: &mut impl Rng) -> Result<Sampled> {
        if !(0.0..=1.0).contains(&self.pos_fraction) {
            return Err(invalid(format!(
                "positive fraction {} is not in [0, 1]",
                self.pos_fraction
            )));
        }
        let pos_all: Vec<usize> = (0..assigned.len())
            .filter(|&i| matches!(assigned[i], Assigned::Positive(_)))
            .collect();
        let neg_all: Vec<usize> = (0..assigned.len())
            .filter(|&i| assigned[i] == Assigned::Negative)
            .collect();
        let want_pos = (self.num as f64 * self.pos_fraction) as usize;
        let pos = pick(&pos_all, want_pos, rng);
        let want_neg = self.num - pos.len();
        let neg = pick(&neg_all, want_neg, rng);
        let pos_gt = pos
            .iter()
            .map(|&i| match assigned[i] {
                Assigned::Positive(j) => j,
                _ => unreachable!("filtered to positives"),
            })
            .collect();
        Ok(Sampled { pos, pos_gt, neg })
    }
}

/// `k` of `from` at random (all of them, in order, when there are no more than `k`).
fn pick(from: &[usize], k: usize, rng: &mut impl Rng) -> Vec<usize> {
    if from.len() <= k {
        return from.to_vec();
    }
    let mut idx: Vec<usize> = sample(rng, from.len(), k)
        .into_iter()
        .map(|i| from[i])
        .collect();
    idx.sort_unstable();
    idx
}

/// Where the ground truths join the proposals when the sampler adds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GtProposalOrder {
    /// mmdet (`base_sampler.py`): the proposals are assigned alone, then the ground truths are
    /// prepended, each a positive of itself (`AssignResult.add_gt_`).
    #[default]
    AfterAssign,
    /// The ground truths are prepended first and assigned with the proposals (their own
    /// matches can then take low-quality matches from the proposals).
    Joint,
}

/// The RoI head's targets of one image: proposals (with the ground truths prepended when the
/// sampler adds them, in `order`) assigned and sampled. Returns the boxes the indices refer to.
pub fn sample_rois(
    assigner: &MaxIouAssigner,
    sampler: &RandomSampler,
    order: GtProposalOrder,
    proposals: &[BBox],
    gts: &[BBox],
    crowds: &[BBox],
    rng: &mut impl Rng,
) -> Result<(Vec<BBox>, Sampled)> {
    if !sampler.add_gt_as_proposals {
        let assigned = assigner.assign(proposals, gts, crowds)?;
        return Ok((proposals.to_vec(), sampler.sample(&assigned, rng)?));
    }
    let boxes: Vec<BBox> = gts.iter().chain(proposals).copied().collect();
    let assigned = match order {
        GtProposalOrder::Joint => assigner.assign(&boxes, gts, crowds)?,
        GtProposalOrder::AfterAssign => {
            let mut a: Vec<Assigned> = (0..gts.len()).map(Assigned::Positive).collect();
            a.extend(assigner.assign(proposals, gts, crowds)?);
            a
        }
    };
    let sampled = sampler.sample(&assigned, rng)?;
    Ok((boxes, sampled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Assigned::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn thresholds_and_low_quality_matches_by_hand() {
        // gt 0 = [0,0,10,10]; gt 1 = [20,0,30,10].
        let gts = [[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]];
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],  // IoU 1 with gt 0 → positive 0
            [0.0, 0.0, 10.0, 5.0],   // IoU 0.5 with gt 0 → ignored by the RPN, positive by rcnn
            [0.0, 0.0, 10.0, 2.0],   // IoU 0.2 → negative
            [50.0, 0.0, 60.0, 10.0], // IoU 0 → negative
            [20.0, 0.0, 30.0, 4.0],  // IoU 0.4 with gt 1: gt 1's best → low-quality positive 1
        ];
        let rpn = MaxIouAssigner::rpn().assign(&boxes, &gts, &[]).unwrap();
        assert_eq!(
            rpn,
            vec![Positive(0), Ignore, Negative, Negative, Positive(1)]
        );
        let no_lq = MaxIouAssigner {
            match_low_quality: false,
            ..MaxIouAssigner::rpn()
        }
        .assign(&boxes, &gts, &[])
        .unwrap();
        assert_eq!(no_lq[4], Ignore);
        let rcnn = MaxIouAssigner::rcnn().assign(&boxes, &gts, &[]).unwrap();
        assert_eq!(
            rcnn,
            vec![Positive(0), Positive(0), Negative, Negative, Negative]
        );
        // gt 1's best IoU (0.4) is under rcnn's min_pos_iou 0.5: no low-quality match.
    }

    #[test]
    fn every_box_tied_at_a_gts_best_iou_is_matched_and_later_gts_win() {
        // Two boxes tie at gt 0's best IoU (0.5); the second also is gt 1's best (0.5).
        let gts = [[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]];
        let boxes = [[0.0, 0.0, 5.0, 10.0], [5.0, 0.0, 10.0, 10.0]];
        // IoU(box0, gt0) = 0.5, IoU(box1, gt0) = 0.5, IoU(box1, gt1) = 0.5, IoU(box0, gt1) = 0.
        let a = MaxIouAssigner::rpn().assign(&boxes, &gts, &[]).unwrap();
        assert_eq!(a, vec![Positive(0), Positive(1)]);
    }

    #[test]
    fn no_ground_truth_makes_everything_negative_and_crowds_can_be_ignored() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 50.0, 50.0]];
        let crowd = [[0.0, 0.0, 12.0, 12.0]];
        let a = MaxIouAssigner::rpn().assign(&boxes, &[], &crowd).unwrap();
        assert_eq!(a, vec![Negative, Negative]);
        let with_iof = MaxIouAssigner {
            ignore_iof_thr: Some(0.5),
            ..MaxIouAssigner::rpn()
        };
        assert_eq!(
            with_iof.assign(&boxes, &[], &crowd).unwrap(),
            vec![Ignore, Negative]
        );
        // A crowd never makes a positive, and a box inside one is not a negative either.
        let gts = [[40.0, 40.0, 50.0, 50.0]];
        assert_eq!(
            with_iof.assign(&boxes, &gts, &crowd).unwrap(),
            vec![Ignore, Positive(0)]
        );
        assert!(
            MaxIouAssigner::rpn()
                .assign(&boxes, &[[5.0, 0.0, 1.0, 1.0]], &[])
                .is_err()
        );
    }

    #[test]
    fn sampler_caps_positives_and_fills_with_negatives() {
        let mut a = vec![Negative; 100];
        for (i, slot) in a.iter_mut().enumerate().take(30) {
            *slot = Positive(i % 3);
        }
        a[99] = Ignore;
        let s = RandomSampler {
            num: 40,
            pos_fraction: 0.25,
            add_gt_as_proposals: false,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = s.sample(&a, &mut rng).unwrap();
        assert_eq!((out.pos.len(), out.neg.len()), (10, 30));
        assert!(out.pos.iter().all(|&i| i < 30));
        assert!(out.neg.iter().all(|&i| (30..99).contains(&i)));
        assert!(out.pos.iter().zip(&out.pos_gt).all(|(&i, &g)| g == i % 3));
        // Few positives: all of them, negatives fill the rest; no duplicates.
        let mut b = vec![Negative; 10];
        b[3] = Positive(0);
        let out = s.sample(&b, &mut rng).unwrap();
        assert_eq!(out.pos, vec![3]);
        assert_eq!(out.neg.len(), 9);
        // Same seed, same draw.
        let x = s.sample(&a, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        let y = s.sample(&a, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        assert_eq!(x, y);
    }

    #[test]
    fn ground_truths_added_as_proposals_are_their_own_positives() {
        let gts = [[0.0, 0.0, 10.0, 10.0]];
        let proposals = [[100.0, 100.0, 110.0, 110.0]];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (boxes, s) = sample_rois(
            &MaxIouAssigner::rcnn(),
            &RandomSampler::rcnn(),
            GtProposalOrder::AfterAssign,
            &proposals,
            &gts,
            &[],
            &mut rng,
        )
        .unwrap();
        assert_eq!(boxes.len(), 2);
        assert_eq!(
            (s.pos.clone(), s.pos_gt.clone(), s.neg.clone()),
            (vec![0], vec![0], vec![1])
        );
    }

    #[test]
    fn assigning_the_proposals_before_adding_the_ground_truths_changes_a_low_quality_match() {
        // P overlaps G0 by 100/120 = 0.833 and G1 by 100/160 = 0.625. Alone among the
        // proposals, P is G1's best box (0.625 ≥ min_pos_iou 0.5), and the low-quality rule
        // (later ground truths win) gives P to G1. Assigned jointly with the ground truths, G1's
        // best box is G1 itself (IoU 1), so P keeps its own best, G0.
        let gts = [[0.0, 0.0, 10.0, 12.0], [0.0, 0.0, 10.0, 16.0]];
        let proposals = [[0.0, 0.0, 10.0, 10.0]];
        let run = |order| {
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let (boxes, s) = sample_rois(
                &MaxIouAssigner::rcnn(),
                &RandomSampler::rcnn(),
                order,
                &proposals,
                &gts,
                &[],
                &mut rng,
            )
            .unwrap();
            assert_eq!(boxes[2], proposals[0]);
            let k = s.pos.iter().position(|&p| p == 2).expect("P is a positive");
            (s.pos.len(), s.pos_gt[k])
        };
        assert_eq!(run(GtProposalOrder::AfterAssign), (3, 1));
        assert_eq!(run(GtProposalOrder::Joint), (3, 0));
    }
}
