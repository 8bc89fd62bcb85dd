"""py_consumer: a Python consumer for a C producer (examples/c_producer.c).

    PYTHONPATH=build/demo/python python3 examples/py_consumer.py build/demo/examples/c_producer

Given the producer's path it starts the producer itself and waits for its
"ready"; without one it opens the segment of a producer already running. It
takes jobs ("job 17") off the C program's queue until "stop", adds their
numbers into the shared total under its lock, and sets the event the producer
waits on.
"""
import subprocess
import sys

import shmval

producer = None
if len(sys.argv) > 1:
    producer = subprocess.Popen([sys.argv[1]], stdout=subprocess.PIPE, text=True)
    if producer.stdout.readline() != "ready\n":
        sys.exit("py_consumer: the producer did not start")

with shmval.Segment("shmval-jobs") as seg:
    jobs = seg.open_list("jobs")  # shm_list_create(&jobs, 0, {.segment, .name = "jobs"})
    total = seg.open_value("total", "l")  # a C long
    taken = 0
    while (job := jobs.pop_wait(timeout=10)) != b"stop":  # queue.Empty after 10 s idle
        with total.get_lock():
            total.value += int(job.split()[1])
        taken += 1
    seg.open_event("done").set()
    print("py_consumer: %d jobs, total %d" % (taken, total.value))

if producer is not None:
    sys.stdout.write(producer.stdout.read())
    sys.exit(producer.wait())
