"""Follow-up chains: lineage, the depth limit, the budget, and one child per step through a
crash."""

from __future__ import annotations

import signal
import sqlite3

from service.catalog import price
from tests.conftest import base_config
from tests.support import wait_until

ANIMATE = {"type": "followup", "model": "kuaishou/kling-2.6-video", "tags": ["animated"],
           "input": {"prompt": "{{ job.input.prompt }}, moving",
                     "start_frame_url": "{{ outputs[0].url }}", "duration": 5}}
UPSCALE = {"type": "followup", "model": "topaz-labs/video-upscale",
           "input": {"video_url": "{{ outputs[0].url }}"}}
AGAIN = {"type": "followup", "model": "google/nano-banana",
         "input": {"prompt": "{{ job.input.prompt }} again", "aspect_ratio": "1:1"}}


def chain_config(sim, tmp_path, handlers, rules):
    return base_config(sim.url, tmp_path, handlers=handlers, rules=rules)


def settle_tree(service, root_id, expected_jobs, timeout=30):
    """Waits until the root and all its descendants have ended and settled their steps."""
    def tree():
        ids, jobs = [root_id], []
        while ids:
            job = service.wait_job(ids.pop(0), timeout=timeout)
            jobs.append(job)
            ids.extend(job["children"])
        return jobs if len(jobs) == expected_jobs else None
    return wait_until(tree, timeout=timeout)


def test_image_to_video_to_upscale_chain(sim, tmp_path, service_factory):
    service = service_factory(chain_config(sim, tmp_path, {"animate": ANIMATE,
                                                           "upscale": UPSCALE}, [
        {"name": "animate", "match": {"model": "google/nano-banana", "status": "completed"},
         "handlers": ["animate"]},
        {"name": "upscale", "match": {"model": "kuaishou/*", "tags": ["animated"]},
         "handlers": ["upscale"]},
    ]))
    root_id = service.submit().json()["id"]
    image, video, upscaled = settle_tree(service, root_id, 3)
    assert [j["model"] for j in (image, video, upscaled)] == [
        "google/nano-banana", "kuaishou/kling-2.6-video", "topaz-labs/video-upscale"]
    assert all(j["status"] == "completed" for j in (image, video, upscaled))
    assert image["children"] == [video["id"]] and video["children"] == [upscaled["id"]]
    assert (video["parent_id"], video["depth"]) == (image["id"], 1)
    assert (upscaled["parent_id"], upscaled["depth"]) == (video["id"], 2)
    assert video["input"]["start_frame_url"] == image["outputs"][0]["url"]
    assert video["input"]["prompt"] == "a red fox, moving"
    assert image["runs"][0]["result"]["job_id"] == video["id"]
    assert sim.stats()["tasks_created"] == 3


def test_depth_limit_stops_a_self_feeding_rule(sim, tmp_path, service_factory):
    service = service_factory(chain_config(sim, tmp_path, {"again": {**AGAIN, "max_depth": 2}},
                                           [{"name": "loop", "handlers": ["again"]}]))
    root_id = service.submit().json()["id"]
    jobs = settle_tree(service, root_id, 3)
    assert [j["depth"] for j in jobs] == [0, 1, 2]
    last = jobs[-1]["runs"][0]
    assert last["status"] == "dead" and "chain depth limit" in last["last_error"]
    assert last["attempts"] == 1
    assert sim.stats()["tasks_created"] == 3


def test_budget_stops_the_chain_before_it_overspends(sim, tmp_path, service_factory):
    each = price("google/nano-banana", {"prompt": "x", "aspect_ratio": "1:1"})
    budget = {"max_chain_cost": each * 2.5}
    service = service_factory(chain_config(sim, tmp_path, {"again": {**AGAIN, "budget": budget}},
                                           [{"name": "loop", "handlers": ["again"]}]))
    root_id = service.submit().json()["id"]
    jobs = settle_tree(service, root_id, 3)
    assert [j.get("cost") for j in jobs] == [None, each, each]
    last = jobs[-1]["runs"][0]
    assert last["status"] == "dead" and "max_chain_cost" in last["last_error"]
    assert sim.stats()["tasks_created"] == 3


def test_step_rerun_after_a_crash_creates_one_child(sim, tmp_path, service_factory):
    service = service_factory(chain_config(sim, tmp_path, {"animate": ANIMATE}, [
        {"name": "animate", "match": {"model": "google/nano-banana"}, "handlers": ["animate"]}]))
    root_id = service.submit().json()["id"]
    _, video = settle_tree(service, root_id, 2)
    service.stop(signal.SIGKILL)
    # The state a crash after the child was recorded, before the step's result was, leaves:
    with sqlite3.connect(tmp_path / "taskhook.db") as db:
        changed = db.execute("UPDATE steps SET status = 'running', result = NULL,"
                             " lease_until = 0 WHERE job_id = ?", [root_id]).rowcount
    assert changed == 1
    service.start()
    job = wait_until(lambda: (j := service.job(root_id))["runs"][0]["result"] and j)
    assert job["runs"][0]["status"] == "succeeded" and job["runs"][0]["attempts"] == 2
    assert job["runs"][0]["result"]["job_id"] == video["id"]
    assert job["children"] == [video["id"]]
    assert sim.stats()["tasks_created"] == 2
