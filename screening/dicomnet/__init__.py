"""The product as a DICOM node: the storage SCP that receives studies, the spool they wait in, the DICOM
objects results are sent back as (a TID 1500 structured report, heatmap Secondary Captures) and the SCU
that sends them."""
