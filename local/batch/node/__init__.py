"""The node side of the local Batch service: what Batch does between API calls, on simulated nodes.

``scheduler`` moves the account's state machines forward in a background
thread (allocating nodes, placing tasks, finishing jobs) and hands placed work
to the ``agent``, which runs start tasks and tasks as real processes
(watched by ``process_supervisor``), moves their files (``file_transfer``) and
installs application packages (``app_package_install``). Job preparation and
release tasks run in ``side_task_runner``, multi-instance (MPI) tasks in
``multi_instance_runner`` with ``mpi_rsh.py`` as their rsh agent;
``orphan_processes`` kills what a crashed service left running. It imports the
model (``local.batch.model``), whose rules it applies; the model never imports
it, and it never imports the HTTP layer.
"""
