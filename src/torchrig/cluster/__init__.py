"""Running the workbench's image on many nodes: Slurm batch scripts, Apptainer files, the
image a cluster pins (by digest), and submitting to and following Slurm."""
