"""The small core: batches, acknowledgements, errors and component contracts."""
